// casecore/sqlite/sqlite.hpp — the embedded SQLite backend (SQLiteCpp).
//
// Every writable connection gets WAL, and every connection a busy timeout, foreign_keys=ON, the
// chosen `synchronous` level and a `casecore_now_us()` SQL function. A new database file is created
// 0600 (its -wal and -shm files inherit that mode): only its owner can read it. options::read_only
// opens without create and never changes the journal mode (a missing file is errc::not_found);
// options::create = false opens read-write but refuses to create a missing file the same way. Write transactions begin IMMEDIATE, so lock waits happen at BEGIN
// under the busy timeout instead of failing mid-transaction. `sqlite::memory:` databases live in one
// connection (pool size 1) because each SQLite in-memory connection is a separate database.
// Thread safety: a connection is used by one thread at a time; the backend is thread-safe.
#pragma once

#include <casecore/database.hpp>
#include <casecore/url.hpp>

#include <chrono>
#include <memory>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::sqlite {

/// PRAGMA synchronous levels.
enum class synchronous { off, normal, full, extra };

/// SQLite-specific settings (URL parameters busy_timeout_ms and synchronous, the latter in any letter case, override them).
struct options {
  /// Durability. FULL (default) syncs the WAL at every commit, so a committed transaction survives
  /// power loss: counter numbers, lease tokens and job epochs once handed out are never handed out
  /// again. NORMAL (opt-in, `?synchronous=normal`) is faster but in WAL mode may lose the last
  /// commits on power loss (not on a process crash) — numbers and tokens may then repeat.
  synchronous sync = synchronous::full;
  std::chrono::milliseconds busy_timeout{5000};    ///< how long BEGIN IMMEDIATE waits for the write lock
  /// Open read-only (SQLITE_OPEN_READONLY): nothing is created or written, the journal mode is left
  /// alone, write transactions fail; a missing file is errc::not_found.
  bool read_only = false;
  /// Create the file (mode 0600) when it is missing; off: a missing file is errc::not_found.
  bool create = true;
};

/// The connection factory for a parsed sqlite: URL; applies URL parameters to `db_options`.
std::shared_ptr<casecore::backend> make_backend(const database_url& url, database_options& db_options, options sqlite_options = {});

/// Open a parsed sqlite: URL.
database open(const database_url& url, database_options db_options = {}, options sqlite_options = {});

/// Translate an SQLite extended result code to casecore's cause (the adapter's mapping table).
errc map_error(int extended_code) noexcept;

/// Replace `$N` placeholders by SQLite's `?N` (outside quotes and comments).
std::string translate_placeholders(std::string_view sql);

} // namespace casecore::sqlite

CASECORE_API_END
