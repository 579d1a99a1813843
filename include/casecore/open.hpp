// casecore/open.hpp — open any supported database from a URL.
//
// sqlite:relative.db · sqlite:///abs/path.db · sqlite::memory: · postgresql://user:pass@host:port/db
// Throws bad_url for malformed URLs or unknown schemes, unsupported when the backend was not built,
// backend_unavailable when the database cannot be opened or reached (the first connection is opened
// eagerly so a wrong URL fails here, not at the first query).
#pragma once

#include <casecore/database.hpp>

#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Open the database a URL names (part of casecore::casecore).
database open(std::string_view url, database_options options = {});

/// The connection factory for a URL, for hosts that wrap it (fault injection, tracing); URL
/// parameters are applied to `options`. Wrap it, then construct casecore::database from it.
std::shared_ptr<casecore::backend> make_backend(std::string_view url, database_options& options);

} // namespace casecore

CASECORE_API_END
