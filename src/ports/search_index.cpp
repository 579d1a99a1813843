// The search_index port's validation layer and the in-memory reference implementation.
#include <casecore/ports/search_index.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

namespace casecore {

namespace {
bool word_char(unsigned char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
} // namespace

std::vector<std::string> search_index::split_words(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (word_char(c)) {
      cur.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : ch);
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

void search_index::index(std::span<const search_document> docs) {
  std::set<std::string_view> seen;
  for (const auto& d : docs) {
    if (d.id.empty() || d.id.size() > 200) raise(errc::invalid_argument, "search document id must be 1..200 bytes");
    if (!seen.insert(d.id).second) raise(errc::invalid_argument, "search document id '" + d.id + "' appears twice in one batch");
  }
  if (!docs.empty()) do_index(docs);
}

std::size_t search_index::remove_file(std::int64_t file_id) { return do_remove_file(file_id); }

std::size_t search_index::count(std::optional<std::int64_t> file_id) { return do_count(file_id); }

std::vector<std::string> search_index::query(std::string_view words, std::size_t limit) {
  auto w = split_words(words);
  if (w.empty()) raise(errc::invalid_argument, "search query has no words");
  if (limit == 0) return {};
  std::sort(w.begin(), w.end());
  w.erase(std::unique(w.begin(), w.end()), w.end());
  return do_query(w, limit);
}

namespace {

class memory_search_index final : public search_index {
  struct doc {
    std::int64_t file_id;
    std::set<std::string> words;
  };

protected:
  void do_index(std::span<const search_document> docs) override {
    std::vector<std::pair<std::string, doc>> prepared;
    for (const auto& d : docs) {
      auto w = split_words(d.text);
      prepared.emplace_back(d.id, doc{d.file_id, std::set<std::string>(w.begin(), w.end())});
    }
    std::lock_guard g(mutex_);
    for (auto& [id, d] : prepared) docs_[id] = std::move(d);
  }
  std::size_t do_remove_file(std::int64_t file_id) override {
    std::lock_guard g(mutex_);
    return static_cast<std::size_t>(std::erase_if(docs_, [&](const auto& kv) { return kv.second.file_id == file_id; }));
  }
  std::size_t do_count(std::optional<std::int64_t> file_id) override {
    std::lock_guard g(mutex_);
    if (!file_id) return docs_.size();
    return static_cast<std::size_t>(std::count_if(docs_.begin(), docs_.end(), [&](const auto& kv) { return kv.second.file_id == *file_id; }));
  }
  std::vector<std::string> do_query(const std::vector<std::string>& words, std::size_t limit) override {
    std::lock_guard g(mutex_);
    std::vector<std::string> out;
    for (const auto& [id, d] : docs_) { // std::map: ascending ids
      if (std::all_of(words.begin(), words.end(), [&](const std::string& w) { return d.words.count(w) != 0; })) out.push_back(id);
      if (out.size() == limit) break;
    }
    return out;
  }

private:
  std::mutex mutex_;
  std::map<std::string, doc> docs_;
};

} // namespace

std::unique_ptr<search_index> make_memory_search_index() { return std::make_unique<memory_search_index>(); }

} // namespace casecore
