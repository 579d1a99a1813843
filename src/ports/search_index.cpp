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

void search_index::index(std::span<const search_document> docs, const fence& guard) {
  std::set<std::string_view> seen;
  for (const auto& d : docs) {
    if (d.id.empty() || d.id.size() > 200) raise(errc::invalid_argument, "search document id must be 1..200 bytes");
    if (!seen.insert(d.id).second) raise(errc::invalid_argument, "search document id '" + d.id + "' appears twice in one batch");
  }
  validate(guard);
  if (guard.fenced()) do_index_fenced(docs, guard); // even an empty batch raises the mark
  else if (!docs.empty()) do_index(docs);
}

std::size_t search_index::remove_file(std::int64_t file_id, const fence& guard) {
  validate(guard);
  return guard.fenced() ? do_remove_file_fenced(file_id, guard) : do_remove_file(file_id);
}

void search_index::do_index_fenced(std::span<const search_document>, const fence&) {
  raise(errc::unsupported, "this search index does not implement fenced writes");
}

std::size_t search_index::do_remove_file_fenced(std::int64_t, const fence&) {
  raise(errc::unsupported, "this search index does not implement fenced writes");
}

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
  void do_index(std::span<const search_document> docs) override { store(docs, nullptr); }
  void do_index_fenced(std::span<const search_document> docs, const fence& guard) override { store(docs, &guard); }
  std::size_t do_remove_file(std::int64_t file_id) override { return erase(file_id, nullptr); }
  std::size_t do_remove_file_fenced(std::int64_t file_id, const fence& guard) override { return erase(file_id, &guard); }
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
  void store(std::span<const search_document> docs, const fence* guard) {
    std::vector<std::pair<std::string, doc>> prepared;
    for (const auto& d : docs) {
      auto w = split_words(d.text);
      prepared.emplace_back(d.id, doc{d.file_id, std::set<std::string>(w.begin(), w.end())});
    }
    std::lock_guard g(mutex_);
    if (guard) admit(*guard);
    for (auto& [id, d] : prepared) docs_[id] = std::move(d);
  }
  std::size_t erase(std::int64_t file_id, const fence* guard) {
    std::lock_guard g(mutex_);
    if (guard) admit(*guard);
    return static_cast<std::size_t>(std::erase_if(docs_, [&](const auto& kv) { return kv.second.file_id == file_id; }));
  }
  // Under mutex_: refuse a token below the scope's mark, else raise the mark.
  void admit(const fence& guard) {
    auto& mark = fences_[guard.scope];
    if (guard.token < mark)
      raise(errc::lease_lost, "search index write fenced off: token " + std::to_string(guard.token) + " is older than " +
                                  std::to_string(mark) + " for '" + guard.scope + "'");
    mark = guard.token;
  }

  std::mutex mutex_;
  std::map<std::string, doc> docs_;
  std::map<std::string, std::int64_t> fences_;
};

} // namespace

std::unique_ptr<search_index> make_memory_search_index() { return std::make_unique<memory_search_index>(); }

} // namespace casecore
