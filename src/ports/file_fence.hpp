// Internal: fencing marks kept as files, for stores that live in a directory (the local blob store).
//
// Each scope has a mark file <dir>/<sha256(scope)> holding the highest accepted token in decimal.
// A fenced write holds an exclusive flock() on that file from the check until the write is done, so
// check, raise and write are one atomic step across the threads and processes of one host. The new
// mark is written (and fsynced when durable) before the guarded write runs: a crash in between
// leaves the mark raised with no write, never a write whose older rival could still be accepted.
#pragma once

#include <casecore/ports/fence.hpp>

#include <filesystem>

namespace casecore::detail {

/// Holds one scope's mark locked for the duration of a fenced write.
class file_fence_guard {
public:
  /// Lock the mark of `guard.scope` under `dir` (created 0700), refuse a stale token with lease_lost,
  /// else record the token (fsync when `durable`). `what` names the port in messages.
  file_fence_guard(const std::filesystem::path& dir, const fence& guard, bool durable, const char* what);
  /// Release the lock.
  ~file_fence_guard();
  file_fence_guard(const file_fence_guard&) = delete;
  file_fence_guard& operator=(const file_fence_guard&) = delete;

private:
  int fd_ = -1;
};

} // namespace casecore::detail
