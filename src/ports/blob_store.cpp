// The blob_store port's validation layer and the in-memory reference implementation.
#include <casecore/ports/blob_store.hpp>

#include <algorithm>
#include <chrono>
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

bool blob_writer::commit(std::string_view key) {
  if (!open_) raise(errc::invalid_argument, "blob_writer::commit after commit or abort");
  const auto k = checked_key(key);
  open_ = false;
  try {
    return do_commit(k);
  } catch (...) {
    do_abort();
    throw;
  }
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

bool blob_store::put(std::string_view key, std::string_view bytes) {
  checked_key(key);
  auto w = open_writer();
  w->write(std::as_bytes(std::span(bytes.data(), bytes.size())));
  return w->commit(key);
}

std::string blob_store::get(std::string_view key) { return do_get(checked_key(key)); }

void blob_store::read(std::string_view key, const std::function<void(std::span<const std::byte>)>& sink) {
  do_read(checked_key(key), sink);
}

void blob_store::do_read(const std::string& key, const std::function<void(std::span<const std::byte>)>& sink) {
  const auto bytes = do_get(key);
  sink(std::as_bytes(std::span(bytes.data(), bytes.size())));
}
bool blob_store::exists(std::string_view key) { return do_exists(checked_key(key)); }
bool blob_store::remove(std::string_view key) { return do_remove(checked_key(key)); }

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

private:
  std::mutex mutex_;
  std::map<std::string, entry> blobs_;
};

} // namespace

std::unique_ptr<blob_store> make_memory_blob_store() { return std::make_unique<memory_blob_store>(); }

} // namespace casecore
