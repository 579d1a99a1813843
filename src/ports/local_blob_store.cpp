// The default blob store: one file per blob under a directory.
//
// Durability protocol of a commit: write a private temporary file in tmp/, fsync it, make sure the
// shard folder objects/<aa>/ exists durably (mkdir, then fsync objects/ — once per shard and
// process), link() the temporary to objects/<aa>/<key> (link fails with EEXIST instead of replacing,
// which makes "create once" atomic across threads and processes), unlink the temporary, fsync the
// shard folder. When the key already exists, the existing file and its folder are fsynced before
// "not created" is answered: the process that linked it may not have synced yet, and our caller is
// about to commit a row pointing at it. A crash at any point leaves either no blob or a complete
// one, plus at worst a stray temporary in tmp/.
//
// Privacy: files are created with the configured file_mode and folders with dir_mode, both applied
// with fchmod/chmod so the umask neither widens nor narrows them. The store refuses folders another
// user owns or that group / others may write: whoever can write there can plant content.
#include "../fd_guard.hpp"
#include "file_fence.hpp"

#include <casecore/detail/token.hpp>
#include <casecore/ports/blob_store.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace casecore {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void io_error(const std::string& what, const fs::path& p, int e) {
  raise(errc::backend_error, what + " '" + p.string() + "': " + std::strerror(e));
}

void fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC | O_NOFOLLOW);
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

using detail::fd_guard;

class local_blob_store final : public blob_store {
public:
  local_blob_store(fs::path dir, local_blob_store_options options) : dir_(std::move(dir)), options_(options) {
    if ((options_.file_mode & ~0777u) != 0 || (options_.dir_mode & ~0777u) != 0 || (options_.file_mode & 0600u) != 0600u ||
        (options_.dir_mode & 0700u) != 0700u)
      raise(errc::invalid_argument, "local blob store modes must be permission bits that keep the owner's rw (files) / rwx (folders)");
    std::error_code ec;
    if (dir_.has_parent_path() && !dir_.parent_path().empty()) fs::create_directories(dir_.parent_path(), ec);
    if (ec) raise(errc::backend_error, "cannot create the parent of blob store '" + dir_.string() + "': " + ec.message());
    prepare_folder(dir_, true);
    prepare_folder(dir_ / "objects", false);
    prepare_folder(dir_ / "tmp", false);
  }

private:
  // Create `p` with dir_mode (exactly), or check an existing one: a directory (the root may be a
  // symlink the host configured; objects/ and tmp/ may not), ours, not writable by anyone else.
  void prepare_folder(const fs::path& p, bool is_root) const {
    if (::mkdir(p.c_str(), 0700) == 0) {
      if (::chmod(p.c_str(), options_.dir_mode) != 0) io_error("cannot set the mode of", p, errno);
      return;
    }
    if (errno != EEXIST) io_error("cannot create blob store folder", p, errno);
    struct stat st {};
    if ((is_root ? ::stat(p.c_str(), &st) : ::lstat(p.c_str(), &st)) != 0) io_error("cannot inspect blob store folder", p, errno);
    if (!S_ISDIR(st.st_mode)) raise(errc::configuration, "blob store folder '" + p.string() + "' is not a directory");
    if (!options_.check_ownership) return;
    if (st.st_uid != ::geteuid())
      raise(errc::configuration, "blob store folder '" + p.string() + "' is owned by uid " + std::to_string(st.st_uid) +
                                     ", not by this process (uid " + std::to_string(::geteuid()) +
                                     "): its owner could plant content; use a folder of your own");
    const auto foreign_write = st.st_mode & 0022u & ~options_.dir_mode;
    if (foreign_write != 0)
      raise(errc::configuration, "blob store folder '" + p.string() + "' is writable by group or others: anyone could plant content; "
                                 "chmod it to 0700 (or set dir_mode to the sharing you want)");
    // Our own folder, just wider than configured (made by an older version): tighten it.
    if ((st.st_mode & 0777u) != options_.dir_mode && ::chmod(p.c_str(), options_.dir_mode) != 0)
      io_error("cannot tighten the mode of", p, errno);
  }

  // Make sure the shard folder of a key exists and its entry in objects/ is durable. The first time
  // this process meets a shard it fsyncs objects/, even when another process created the shard: that
  // process may not have synced objects/ yet.
  fs::path shard_folder(const std::string& key) {
    const fs::path folder = dir_ / "objects" / key.substr(0, 2);
    if (::mkdir(folder.c_str(), 0700) == 0) {
      if (::chmod(folder.c_str(), options_.dir_mode) != 0) io_error("cannot set the mode of", folder, errno);
    } else if (errno != EEXIST) {
      io_error("cannot create", folder, errno);
    }
    if (!options_.fsync) return folder;
    {
      std::lock_guard g(mutex_);
      if (durable_shards_.contains(folder.filename().string())) return folder;
    }
    fsync_path(dir_ / "objects", O_RDONLY | O_DIRECTORY);
    std::lock_guard g(mutex_);
    durable_shards_.insert(folder.filename().string());
    return folder;
  }

  class writer final : public blob_writer {
  public:
    explicit writer(local_blob_store& store) : store_(store) {
      temp_ = store_.dir_ / "tmp" / (detail::random_token() + ".part");
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd_ < 0) io_error("cannot create temporary blob", temp_, errno);
      // Exactly file_mode, whatever the umask (which could only narrow 0600, or could not widen it).
      if (::fchmod(fd_, store_.options_.file_mode) != 0) {
        const int e = errno;
        do_abort();
        io_error("cannot set the mode of", temp_, e);
      }
    }
    ~writer() override { abort(); }

  protected:
    void do_write(std::span<const std::byte> bytes) override { write_all(fd_, bytes.data(), bytes.size(), temp_); }

    bool do_commit(const std::string& key) override {
      if (store_.options_.fsync && ::fsync(fd_) != 0) io_error("fsync failed on", temp_, errno);
      close_fd();
      const fs::path folder = store_.shard_folder(key);
      const fs::path target = folder / key;
      bool created = true;
      if (::link(temp_.c_str(), target.c_str()) != 0) {
        if (errno != EEXIST) io_error("cannot publish blob as", target, errno);
        created = false;
        ::utimensat(AT_FDCWD, target.c_str(), nullptr, AT_SYMLINK_NOFOLLOW); // restarts the sweep's grace period
        // Another writer linked it, perhaps a moment ago and not yet synced: sync it ourselves
        // before our caller commits a row that points at it.
        if (store_.options_.fsync) fsync_path(target, O_RDONLY);
      }
      ::unlink(temp_.c_str());
      temp_.clear();
      if (store_.options_.fsync) fsync_path(folder, O_RDONLY | O_DIRECTORY);
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
    local_blob_store& store_;
    fs::path temp_;
    int fd_ = -1;
  };

  fs::path object_path(const std::string& key) const { return dir_ / "objects" / key.substr(0, 2) / key; }

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*this); }

  // Reads stream from one descriptor opened once: no symlink and nothing but a regular file, so a
  // planted FIFO cannot hang a reader.
  class file_reader final : public blob_reader {
  public:
    file_reader(int fd, std::uint64_t size, fs::path path) : blob_reader(size), fd_(fd), path_(std::move(path)) {}

  protected:
    std::size_t do_read(std::span<std::byte> out) override {
      for (;;) {
        const ssize_t n = ::read(fd_.get(), out.data(), out.size());
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EINTR) io_error("cannot read blob", path_, errno);
      }
    }

  private:
    fd_guard fd_;
    fs::path path_;
  };

  std::unique_ptr<blob_reader> do_open_reader(const std::string& key) override {
    const auto p = object_path(key);
    fd_guard fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (fd.get() < 0) {
      if (errno == ENOENT) raise(errc::not_found, "blob '" + key + "' not found");
      io_error("cannot open blob", p, errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) io_error("cannot inspect blob", p, errno);
    if (!S_ISREG(st.st_mode)) raise(errc::backend_error, "blob '" + key + "' is not a regular file");
    return std::make_unique<file_reader>(fd.release(), static_cast<std::uint64_t>(st.st_size), p);
  }

  std::string do_get(const std::string& key) override {
    std::string out;
    auto reader = do_open_reader(key);
    out.resize(static_cast<std::size_t>(reader->size()));
    std::size_t at = 0;
    while (at < out.size()) {
      const auto n = reader->read(std::as_writable_bytes(std::span(out.data() + at, out.size() - at)));
      if (n == 0) break;
      at += n;
    }
    out.resize(at);
    return out;
  }

  bool do_exists(const std::string& key) override {
    struct stat st {};
    return ::lstat(object_path(key).c_str(), &st) == 0;
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
        if (::lstat(f->path().c_str(), &st) != 0) continue; // removed meanwhile
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
  std::mutex mutex_;
  std::set<std::string> durable_shards_; // shard folders whose entry in objects/ this process synced
};

} // namespace

std::unique_ptr<blob_store> make_local_blob_store(const std::filesystem::path& dir, local_blob_store_options options) {
  if (dir.empty()) raise(errc::invalid_argument, "local blob store needs a directory");
  return std::make_unique<local_blob_store>(dir, options);
}

} // namespace casecore
