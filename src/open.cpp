#include <casecore/open.hpp>
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/url.hpp>
#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/postgres.hpp>
#endif

namespace casecore {

database open(std::string_view url, database_options options) {
  const auto parsed = parse_url(url);
  if (parsed.scheme == "sqlite") return sqlite::open(parsed, std::move(options));
#ifdef CASECORE_WITH_POSTGRES
  return postgres::open(parsed, std::move(options));
#else
  raise(errc::unsupported, "casecore was built without PostgreSQL support (CASECORE_WITH_POSTGRES=OFF)");
#endif
}

} // namespace casecore
