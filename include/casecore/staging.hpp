// casecore/staging.hpp — a private scratch folder per bulk import.
//
// staging_area::create(root, import_id) makes root/<import_id>.<random token>/, so two imports —
// even of the same id, from different processes or hosts sharing the root — never share a folder.
// The folder holds an owner file (.casecore-owner: token, pid, host, heartbeat time); heartbeat()
// refreshes it. remove() deletes the folder only if the owner file still carries this area's token,
// so cleanup removes only its own. A crashed import leaves its folder: reclaim_stale(root, older_than)
// removes folders whose heartbeat is older than `older_than`, or whose owner process on this host
// is gone. Thread safety: a staging_area belongs to one import (one thread at a time); create and
// reclaim_stale may run concurrently anywhere. Failure modes: invalid_argument for a bad import id;
// errc::backend_error for filesystem failures.
// Privacy: import folders are 0700 and the owner file 0600; a root that create() makes is 0700.
// Folder names end in a 128-bit token from the OS CSPRNG, so another user cannot guess them;
// reclaim_stale never follows a symlink found in the root.
#pragma once

#include <casecore/value.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// The owner record of a staging folder.
struct staging_owner {
  std::string token;      ///< the area's unique token
  long pid = 0;           ///< owning process
  std::string host;       ///< owning host
  micros heartbeat_us = 0;///< last heartbeat (wall clock)
};

/// One import's private folder; removed by remove() or the destructor unless keep() was called.
class staging_area {
public:
  /// Create a new unique folder for `import_id` (1..64 of [A-Za-z0-9_-]) under `root`.
  static staging_area create(const std::filesystem::path& root, std::string_view import_id);
  ~staging_area();
  /// Takes over the folder (and its removal) from `o`.
  staging_area(staging_area&& o) noexcept;
  staging_area& operator=(staging_area&&) = delete;
  staging_area(const staging_area&) = delete;
  staging_area& operator=(const staging_area&) = delete;

  /// The folder.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The unique token.
  const std::string& token() const noexcept { return token_; }
  /// Refresh the heartbeat (call it while a long import runs).
  void heartbeat();
  /// Delete the folder if it is still ours; true when removed.
  bool remove();
  /// Leave the folder in place when this object dies (e.g. to resume later).
  void keep() noexcept { keep_ = true; }

  /// Read the owner file of a staging folder.
  static staging_owner read_owner(const std::filesystem::path& folder);
  /// Remove staging folders under `root` whose owner is stale or dead; returns the removed paths.
  static std::vector<std::filesystem::path> reclaim_stale(const std::filesystem::path& root, std::chrono::milliseconds older_than);

private:
  staging_area(std::filesystem::path path, std::string token) : path_(std::move(path)), token_(std::move(token)) {}
  std::filesystem::path path_;
  std::string token_;
  bool keep_ = false;
};

} // namespace casecore

CASECORE_API_END
