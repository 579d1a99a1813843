// The blob_store port's validation layer and the in-memory reference implementation.
#include <casecore/ports/blob_store.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

namespace casecore {

namespace {
std::string checked_key(std::string_view key) {
  if (!blob_store::valid_key(key))
    raise(errc::invalid_argument, "invalid blob key '" + std::string(key.substr(0, 64)) + "': want 1..200 of [A-Za-z0-9_.-], not starting with '.'");
  return std::string(key);
}
} // namespace

void blob_writer::write(std::span<const std::byte> bytes) {
  if (!open_) raise(errc::invalid_argument, "blob_writer::write after commit or abort");
  do_write(bytes);
  size_ += bytes.size();
}

bool blob_writer::commit(std::string_view key, const fence& guard) {
  if (!open_) raise(errc::invalid_argument, "blob_writer::commit after commit or abort");
  const auto k = checked_key(key);
  validate(guard);
  open_ = false;
  try {
    return guard.fenced() ? do_commit_fenced(k, guard) : do_commit(k);
  } catch (...) {
    do_abort();
    throw;
  }
}

bool blob_writer::do_commit_fenced(const std::string&, const fence&) {
  raise(errc::unsupported, "this blob store does not implement fenced writes");
}

std::size_t blob_reader::read(std::span<std::byte> out) {
  const auto left = size_ - position_;
  if (left == 0 || out.empty()) return 0;
  if (out.size() > left) out = out.first(static_cast<std::size_t>(left));
  const auto n = do_read(out);
  if (n == 0 || n > out.size()) raise(errc::backend_error, "blob reader returned " + std::to_string(n) + " bytes before the end of the blob");
  position_ += n;
  return n;
}

void blob_writer::abort() noexcept {
  if (!open_) return;
  open_ = false;
  do_abort();
}

bool blob_store::valid_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > 200 || key.front() == '.') return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

std::unique_ptr<blob_writer> blob_store::open_writer() { return do_open_writer(); }

bool blob_store::put(std::string_view key, std::string_view bytes, const fence& guard) {
  checked_key(key);
  validate(guard);
  auto w = open_writer();
  w->write(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return w->commit(key, guard);
}

std::string blob_store::get(std::string_view key) { return do_get(checked_key(key)); }
std::unique_ptr<blob_reader> blob_store::open_reader(std::string_view key) { return do_open_reader(checked_key(key)); }
bool blob_store::exists(std::string_view key) { return do_exists(checked_key(key)); }

bool blob_store::remove(std::string_view key, const fence& guard) {
  const auto k = checked_key(key);
  validate(guard);
  return guard.fenced() ? do_remove_fenced(k, guard) : do_remove(k);
}

bool blob_store::do_remove_fenced(const std::string&, const fence&) {
  raise(errc::unsupported, "this blob store does not implement fenced writes");
}

namespace {
// The default reader: the whole blob in memory, served in pieces.
class string_reader final : public blob_reader {
public:
  explicit string_reader(std::string bytes) : blob_reader(bytes.size()), bytes_(std::move(bytes)) {}

protected:
  std::size_t do_read(std::span<std::byte> out) override {
    const auto at = static_cast<std::size_t>(position());
    const auto n = std::min(out.size(), bytes_.size() - at);
    std::memcpy(out.data(), bytes_.data() + at, n);
    return n;
  }

private:
  std::string bytes_;
};
} // namespace

std::unique_ptr<blob_reader> blob_store::do_open_reader(const std::string& key) { return std::make_unique<string_reader>(do_get(key)); }

std::vector<blob_info> blob_store::list() {
  auto out = do_list();
  std::sort(out.begin(), out.end(), [](const blob_info& a, const blob_info& b) { return a.key < b.key; });
  return out;
}

namespace {

micros wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class memory_blob_store final : public blob_store {
  struct entry {
    std::string bytes;
    micros modified_us;
  };

  class writer final : public blob_writer {
  public:
    explicit writer(memory_blob_store& store) : store_(store) {}
    ~writer() override { abort(); }

  protected:
    void do_write(std::span<const std::byte> bytes) override {
      buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    bool do_commit(const std::string& key) override {
      std::lock_guard g(store_.mutex_);
      auto [it, created] = store_.blobs_.try_emplace(key, entry{std::move(buffer_), 0});
      it->second.modified_us = wall_now_us();
      return created;
    }
    bool do_commit_fenced(const std::string& key, const fence& guard) override {
      std::lock_guard g(store_.mutex_);
      store_.admit(guard);
      auto [it, created] = store_.blobs_.try_emplace(key, entry{std::move(buffer_), 0});
      it->second.modified_us = wall_now_us();
      return created;
    }
    void do_abort() noexcept override { buffer_.clear(); }

  private:
    memory_blob_store& store_;
    std::string buffer_;
  };

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*this); }
  std::string do_get(const std::string& key) override {
    std::lock_guard g(mutex_);
    auto it = blobs_.find(key);
    if (it == blobs_.end()) raise(errc::not_found, "blob '" + key + "' not found");
    return it->second.bytes;
  }
  bool do_exists(const std::string& key) override {
    std::lock_guard g(mutex_);
    return blobs_.count(key) != 0;
  }
  bool do_remove(const std::string& key) override {
    std::lock_guard g(mutex_);
    return blobs_.erase(key) != 0;
  }
  std::vector<blob_info> do_list() override {
    std::lock_guard g(mutex_);
    std::vector<blob_info> out;
    out.reserve(blobs_.size());
    for (const auto& [k, e] : blobs_) out.push_back({k, e.bytes.size(), e.modified_us});
    return out;
  }
  bool do_remove_fenced(const std::string& key, const fence& guard) override {
    std::lock_guard g(mutex_);
    admit(guard);
    return blobs_.erase(key) != 0;
  }

private:
  // Under mutex_: refuse a token below the scope's mark, else raise the mark.
  void admit(const fence& guard) {
    auto& mark = fences_[guard.scope];
    if (guard.token < mark)
      raise(errc::lease_lost, "blob write fenced off: token " + std::to_string(guard.token) + " is older than " +
                                  std::to_string(mark) + " for '" + guard.scope + "'");
    mark = guard.token;
  }

  std::mutex mutex_;
  std::map<std::string, entry> blobs_;
  std::map<std::string, std::int64_t> fences_;
};

} // namespace

std::unique_ptr<blob_store> make_memory_blob_store() { return std::make_unique<memory_blob_store>(); }

} // namespace casecore
