// src/fd_guard.hpp (internal) — a file descriptor closed when its owner goes out of scope, so every
// early return and exception path of the file registry and the local blob store closes what it opened.
#pragma once

#include <unistd.h>

#include <utility>

namespace casecore::detail {

class fd_guard {
public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const noexcept { return fd_; }
  /// Give up ownership (the descriptor is not closed here any more).
  int release() noexcept { return std::exchange(fd_, -1); }

private:
  int fd_;
};

} // namespace casecore::detail
