// casecore/postgres/postgres.hpp — the PostgreSQL backend (libpqxx).
//
// Many processes and hosts share one database. Transactions are opened with an explicit BEGIN
// (isolation chosen per call); statements are prepared once per connection and always take bound
// parameters. A connection that breaks is discarded by the pool and replaced. BYTEA values read back
// byte for byte under either bytea_output (hex or escape; escape once read as empty blobs).
// Thread safety: a connection is used by one thread at a time; the backend is thread-safe.
#pragma once

#include <casecore/database.hpp>
#include <casecore/url.hpp>

#include <memory>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::postgres {

/// The connection factory for a parsed postgresql:// URL; applies URL parameters to `db_options`.
std::shared_ptr<casecore::backend> make_backend(const database_url& url, database_options& db_options);

/// Open a parsed postgresql:// URL.
database open(const database_url& url, database_options db_options = {});

/// Translate a SQLSTATE to casecore's cause (the adapter's mapping table).
errc map_sqlstate(std::string_view sqlstate) noexcept;

/// Classify a failed connect from libpq's message (it carries no SQLSTATE for most of them):
/// backend_unavailable when the server or network may come back (refused, starting, stopping,
/// restarting, full), configuration when the server refused who we are or what we asked.
errc classify_connect_failure(std::string_view message) noexcept;

/// How a connection pooler between casecore and PostgreSQL is handled (URL `pooler=`).
enum class pooler_mode {
  auto_detect, ///< default: detect a pooler at connect time and use unnamed statements behind one
  none,        ///< direct connections: named (content-hashed) prepared statements
  session,     ///< a session-mode pooler: like none, but reported by behind_pooler()
  transaction, ///< a transaction-mode pooler: unnamed statements only
};

/// True when `db` talks to PostgreSQL through a pooler (declared, or detected at connect).
bool behind_pooler(const database& db) noexcept;

/// True when `db` uses unnamed statements (a transaction pooler was declared or detected).
bool uses_unnamed_statements(const database& db) noexcept;

} // namespace casecore::postgres

CASECORE_API_END
