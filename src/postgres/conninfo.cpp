#include "conninfo.hpp"

namespace casecore::postgres::detail {

std::string libpq_conninfo(const database_url& url) { return url.target; }

} // namespace casecore::postgres::detail
