#include <casecore/detail/backend.hpp>
#include <casecore/open.hpp>
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/url.hpp>
#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/postgres.hpp>
#endif

namespace casecore {

std::shared_ptr<detail::backend> make_backend(std::string_view url, database_options& options) {
  const auto parsed = parse_url(url);
  if (parsed.scheme == "sqlite") return sqlite::make_backend(parsed, options);
#ifdef CASECORE_WITH_POSTGRES
  return postgres::make_backend(parsed, options);
#else
  raise(errc::unsupported, "casecore was built without PostgreSQL support (CASECORE_WITH_POSTGRES=OFF)");
#endif
}

database open(std::string_view url, database_options options) {
  auto backend = make_backend(url, options);
  database db(std::move(backend), std::move(options));
  write_options probe;
  probe.reconnect_budget = std::chrono::milliseconds(0); // open() reports an unreachable server at once
  db.read([](transaction&) {}, probe); // open the first connection now: a bad URL or server fails here, typed
  return db;
}

} // namespace casecore
