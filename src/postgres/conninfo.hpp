// Internal: the libpq connection parameters for a parsed postgresql:// URL.
#pragma once

#include <casecore/url.hpp>

#include <string>

namespace casecore::postgres::detail {

/// libpq keyword=value parameters (quoted) for `url`, for one direct connection to its primary.
std::string libpq_conninfo(const database_url& url);

} // namespace casecore::postgres::detail
