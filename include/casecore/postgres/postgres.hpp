// casecore/postgres/postgres.hpp — the PostgreSQL backend (libpqxx).
//
// Many processes and hosts share one database. Transactions are opened with an explicit BEGIN
// (isolation chosen per call); statements are prepared once per connection and always take bound
// parameters. A connection that breaks is discarded by the pool and replaced.
// Thread safety: a connection is used by one thread at a time; the backend is thread-safe.
#pragma once

#include <casecore/database.hpp>
#include <casecore/url.hpp>

#include <memory>
#include <string_view>

namespace casecore::postgres {

/// The connection factory for a parsed postgresql:// URL; applies URL parameters to `db_options`.
std::shared_ptr<detail::backend> make_backend(const database_url& url, database_options& db_options);

/// Open a parsed postgresql:// URL.
database open(const database_url& url, database_options db_options = {});

/// Translate a SQLSTATE to casecore's cause (the adapter's mapping table).
errc map_sqlstate(std::string_view sqlstate) noexcept;

} // namespace casecore::postgres
