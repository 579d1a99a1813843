#include "file_fence.hpp"

#include <casecore/error.hpp>
#include <casecore/hash.hpp>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace casecore::detail {

namespace {
[[noreturn]] void fence_io_error(const std::string& what, const std::filesystem::path& p, int e) {
  raise(errc::backend_error, what + " '" + p.string() + "': " + std::strerror(e));
}
} // namespace

file_fence_guard::file_fence_guard(const std::filesystem::path& dir, const fence& guard, bool durable, const char* what) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fence_io_error("cannot create", dir, errno);
  // The scope is hashed into the name: any printable scope ("file:17", "a/b") is a safe file name.
  const auto path = dir / sha256_hex(guard.scope);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) fence_io_error("cannot open fence mark", path, errno);
  try {
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fence_io_error("cannot lock fence mark", path, errno);
    char buf[32] = {};
    ssize_t n;
    do n = ::pread(fd_, buf, sizeof buf - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) fence_io_error("cannot read fence mark", path, errno);
    std::int64_t mark = 0;
    if (n > 0) {
      const auto [end, ec] = std::from_chars(buf, buf + n, mark);
      if (ec != std::errc() || end != buf + n) raise(errc::backend_error, "corrupt fence mark '" + path.string() + "'");
    }
    if (guard.token < mark)
      raise(errc::lease_lost, std::string(what) + " write fenced off: token " + std::to_string(guard.token) +
                                  " is older than " + std::to_string(mark) + " for '" + guard.scope + "'");
    if (n == 0 && durable) { // a new mark file: make its name durable too
      const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd < 0 || ::fsync(dfd) != 0) {
        const int e = errno;
        if (dfd >= 0) ::close(dfd);
        fence_io_error("cannot fsync", dir, e);
      }
      ::close(dfd);
    }
    if (guard.token > mark) {
      const auto text = std::to_string(guard.token);
      if (::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
          ::ftruncate(fd_, static_cast<off_t>(text.size())) != 0)
        fence_io_error("cannot write fence mark", path, errno);
      if (durable && ::fsync(fd_) != 0) fence_io_error("cannot fsync fence mark", path, errno);
    }
  } catch (...) {
    ::close(fd_); // also releases the lock
    throw;
  }
}

file_fence_guard::~file_fence_guard() {
  if (fd_ >= 0) ::close(fd_);
}

} // namespace casecore::detail
