// The default blob store: one file per blob under a directory.
//
// Durability protocol of a commit: write a private temporary file in tmp/, fsync it, link() it to
// objects/<aa>/<key> (link fails with EEXIST instead of replacing, which makes "create once" atomic
// across threads and processes), unlink the temporary, fsync the object's directory. A crash at any
// point leaves either no blob or a complete one, plus at worst a stray temporary in tmp/.
#include "file_fence.hpp"

#include <casecore/detail/token.hpp>
#include <casecore/ports/blob_store.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace casecore {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void io_error(const std::string& what, const fs::path& p, int e) {
  raise(errc::backend_error, what + " '" + p.string() + "': " + std::strerror(e));
}

void fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) io_error("cannot open for fsync", p, errno);
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) io_error("fsync failed on", p, e);
}

void write_all(int fd, const std::byte* data, std::size_t n, const fs::path& p) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      io_error("cannot write", p, errno);
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

class local_blob_store final : public blob_store {
public:
  local_blob_store(fs::path dir, local_blob_store_options options) : dir_(std::move(dir)), options_(options) {
    std::error_code ec;
    fs::create_directories(dir_ / "objects", ec);
    if (!ec) fs::create_directories(dir_ / "tmp", ec);
    if (ec) raise(errc::backend_error, "cannot create blob store folders under '" + dir_.string() + "': " + ec.message());
  }

private:
  class writer final : public blob_writer {
  public:
    explicit writer(const local_blob_store& store) : store_(store) {
      temp_ = store_.dir_ / "tmp" / (detail::random_token() + ".part");
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0) io_error("cannot create temporary blob", temp_, errno);
    }
    ~writer() override { abort(); }

  protected:
    void do_write(std::span<const std::byte> bytes) override { write_all(fd_, bytes.data(), bytes.size(), temp_); }

    bool do_commit(const std::string& key) override {
      if (store_.options_.fsync && ::fsync(fd_) != 0) io_error("fsync failed on", temp_, errno);
      close_fd();
      const fs::path folder = store_.dir_ / "objects" / key.substr(0, 2);
      if (::mkdir(folder.c_str(), 0755) != 0 && errno != EEXIST) io_error("cannot create", folder, errno);
      const fs::path target = folder / key;
      bool created = true;
      if (::link(temp_.c_str(), target.c_str()) != 0) {
        if (errno != EEXIST) io_error("cannot publish blob as", target, errno);
        created = false;
        ::utimensat(AT_FDCWD, target.c_str(), nullptr, 0); // refresh: restarts the sweep's grace period
      }
      ::unlink(temp_.c_str());
      temp_.clear();
      if (created && store_.options_.fsync) fsync_path(folder, O_RDONLY | O_DIRECTORY);
      return created;
    }

    bool do_commit_fenced(const std::string& key, const fence& guard) override {
      detail::file_fence_guard hold(store_.dir_ / "fences", guard, store_.options_.fsync, "blob");
      return do_commit(key);
    }

    void do_abort() noexcept override {
      close_fd();
      if (!temp_.empty()) ::unlink(temp_.c_str());
      temp_.clear();
    }

  private:
    void close_fd() noexcept {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
    const local_blob_store& store_;
    fs::path temp_;
    int fd_ = -1;
  };

  fs::path object_path(const std::string& key) const { return dir_ / "objects" / key.substr(0, 2) / key; }

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*this); }

  std::string do_get(const std::string& key) override {
    const auto p = object_path(key);
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) raise(errc::not_found, "blob '" + key + "' not found");
      io_error("cannot open blob", p, errno);
    }
    std::string out;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        const int e = errno;
        ::close(fd);
        io_error("cannot read blob", p, e);
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
  }

  bool do_exists(const std::string& key) override {
    struct stat st {};
    return ::stat(object_path(key).c_str(), &st) == 0;
  }

  bool do_remove(const std::string& key) override {
    const auto p = object_path(key);
    if (::unlink(p.c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    io_error("cannot remove blob", p, errno);
  }

  bool do_remove_fenced(const std::string& key, const fence& guard) override {
    detail::file_fence_guard hold(dir_ / "fences", guard, options_.fsync, "blob");
    return do_remove(key);
  }

  std::vector<blob_info> do_list() override {
    std::vector<blob_info> out;
    std::error_code ec;
    for (fs::directory_iterator shard(dir_ / "objects", ec), end; !ec && shard != end; shard.increment(ec)) {
      std::error_code ec2;
      for (fs::directory_iterator f(shard->path(), ec2); !ec2 && f != end; f.increment(ec2)) {
        struct stat st {};
        if (::stat(f->path().c_str(), &st) != 0) continue; // removed meanwhile
        const micros mtime = static_cast<micros>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
        out.push_back({f->path().filename().string(), static_cast<std::uint64_t>(st.st_size), mtime});
      }
    }
    if (ec) raise(errc::backend_error, "cannot list blob store '" + dir_.string() + "': " + ec.message());
    return out;
  }

private:
  fs::path dir_;
  local_blob_store_options options_;
};

} // namespace

std::unique_ptr<blob_store> make_local_blob_store(const std::filesystem::path& dir, local_blob_store_options options) {
  if (dir.empty()) raise(errc::invalid_argument, "local blob store needs a directory");
  return std::make_unique<local_blob_store>(dir, options);
}

} // namespace casecore
