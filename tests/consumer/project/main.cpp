// A downstream program: opens SQLite in memory, migrates, runs one query; names the PostgreSQL
// adapter when the build gives it (casecore::postgres defines CASECORE_WITH_POSTGRES).
#include <casecore/migration.hpp>
#include <casecore/version.hpp>
#ifdef CONSUMER_SQLITE_ONLY
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/url.hpp>
#else
#include <casecore/open.hpp>
#endif
#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/postgres.hpp>
#endif

#include <cstdio>

int main() {
#ifdef CONSUMER_SQLITE_ONLY
  auto db = casecore::sqlite::open(casecore::parse_url("sqlite::memory:"));
  const char* backends = "sqlite";
#else
  auto db = casecore::open("sqlite::memory:");
  const char* backends = "all";
#endif
  casecore::migrate(db);
  const auto n = db.write([](casecore::transaction& tx) { return tx.query_one<int>("SELECT $1 + 1", 41); });
#ifdef CASECORE_WITH_POSTGRES
  if (casecore::postgres::map_sqlstate("40001") != casecore::errc::serialization_failure) return 1;
  const char* postgres = "postgres linked";
#else
  const char* postgres = "no postgres";
#endif
  std::printf("consumer: %d (casecore %s, %s, %s)\n", n, CASECORE_VERSION, backends, postgres);
  return n == 42 ? 0 : 1;
}
