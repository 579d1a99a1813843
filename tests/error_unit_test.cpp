// The adapters' mapping tables, entry by entry.
#include "narrow.hpp"
#include <casecore/sqlite/sqlite.hpp>
#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/postgres.hpp>
#endif
#include <doctest/doctest.h>
#include <sqlite3.h>

using namespace casecore;

TEST_CASE("SQLite result codes map to casecore causes") {
  CHECK(sqlite::map_error(SQLITE_BUSY) == errc::busy);
  CHECK(sqlite::map_error(SQLITE_BUSY_SNAPSHOT) == errc::busy);
  CHECK(sqlite::map_error(SQLITE_LOCKED) == errc::busy);
  CHECK(sqlite::map_error(SQLITE_CONSTRAINT_UNIQUE) == errc::already_exists);
  CHECK(sqlite::map_error(SQLITE_CONSTRAINT_PRIMARYKEY) == errc::already_exists);
  CHECK(sqlite::map_error(SQLITE_CONSTRAINT_FOREIGNKEY) == errc::constraint_violation);
  CHECK(sqlite::map_error(SQLITE_CONSTRAINT_CHECK) == errc::constraint_violation);
  CHECK(sqlite::map_error(SQLITE_CONSTRAINT_NOTNULL) == errc::constraint_violation);
  CHECK(sqlite::map_error(SQLITE_CANTOPEN) == errc::backend_unavailable);
  CHECK(sqlite::map_error(SQLITE_NOTADB) == errc::backend_unavailable);
  CHECK(sqlite::map_error(SQLITE_INTERRUPT) == errc::timeout);
  CHECK(sqlite::map_error(SQLITE_TOOBIG) == errc::invalid_argument);
  CHECK(sqlite::map_error(SQLITE_IOERR) == errc::backend_error);
  CHECK(sqlite::map_error(SQLITE_ERROR) == errc::backend_error);
}

#ifdef CASECORE_WITH_POSTGRES // built without PostgreSQL (-DCASECORE_WITH_POSTGRES=OFF) there is no adapter to test
TEST_CASE("PostgreSQL SQLSTATEs map to casecore causes") {
  CHECK(postgres::map_sqlstate("40001") == errc::serialization_failure);
  CHECK(postgres::map_sqlstate("40P01") == errc::deadlock);
  CHECK(postgres::map_sqlstate("40003") == errc::outcome_unknown);
  CHECK(postgres::map_sqlstate("55P03") == errc::busy);
  CHECK(postgres::map_sqlstate("23505") == errc::already_exists);
  CHECK(postgres::map_sqlstate("23503") == errc::constraint_violation);
  CHECK(postgres::map_sqlstate("23514") == errc::constraint_violation);
  CHECK(postgres::map_sqlstate("57014") == errc::timeout);
  CHECK(postgres::map_sqlstate("08006") == errc::connection_lost);
  CHECK(postgres::map_sqlstate("57P01") == errc::connection_lost);
  CHECK(postgres::map_sqlstate("22P02") == errc::invalid_argument);
  CHECK(postgres::map_sqlstate("53300") == errc::busy);
  CHECK(postgres::map_sqlstate("42601") == errc::backend_error);
  CHECK(postgres::map_sqlstate("") == errc::backend_error);
}
#endif

TEST_CASE("error classification: retryable and conflict") {
  for (auto c : {errc::busy, errc::serialization_failure, errc::deadlock, errc::connection_lost, errc::pool_timeout})
    CHECK(error(c, "x").retryable());
  for (auto c : {errc::outcome_unknown, errc::invalid_argument, errc::version_conflict, errc::already_exists})
    CHECK_FALSE(error(c, "x").retryable());
  CHECK(error(errc::version_conflict, "x").conflict());
  CHECK(error(errc::lease_lost, "x").conflict());
  CHECK(error(errc::invalid_transition, "x").conflict());
  CHECK_FALSE(error(errc::busy, "x").conflict());
  CHECK_THROWS_AS(raise(errc::outcome_unknown, "x"), outcome_unknown);
  CHECK_THROWS_AS(raise(errc::not_found, "x"), not_found);
  CHECK(std::string(error(errc::busy, "db locked").what()) == "busy: db locked");
}

TEST_CASE("placeholders are translated outside quotes only") {
  CHECK(sqlite::translate_placeholders("SELECT $1, '$2', \"$3\", $10 -- $4\n") == "SELECT ?1, '$2', \"$3\", ?10 -- $4\n");
}

TEST_CASE("checked narrowing at API edges: a value that does not fit is an invalid_argument naming it") {
  CHECK(casecore::detail::narrow<int>(std::int64_t{42}, "n") == 42);
  CHECK(casecore::detail::narrow<std::size_t>(std::int64_t{7}, "n") == 7u);
  CHECK_THROWS_WITH_AS(casecore::detail::narrow<int>(std::int64_t{1} << 40, "trigger secret size"),
                       doctest::Contains("trigger secret size is out of range"), casecore::invalid_argument);
  CHECK_THROWS_AS(casecore::detail::narrow<std::size_t>(std::int64_t{-1}, "pool size"), casecore::invalid_argument);
  CHECK_THROWS_AS(casecore::detail::narrow<std::int64_t>(std::uint64_t{1} << 63, "file size"), casecore::invalid_argument);
}

TEST_CASE("raise with a native code keeps the typed subclass and the code") {
  try {
    casecore::raise(casecore::errc::already_exists, "dup", "23505");
  } catch (const casecore::already_exists& e) {
    CHECK(e.native_code() == "23505");
    CHECK(std::string(e.what()).ends_with("dup"));
  }
  try {
    casecore::raise(casecore::errc::busy, "locked");
  } catch (const casecore::error& e) {
    CHECK(e.code() == casecore::errc::busy);
    CHECK(e.native_code().empty());
  }
}
