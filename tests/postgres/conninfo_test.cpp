// The PostgreSQL adapter hands libpq keyword/value parameters built from the parsed URL, never the
// URL text: odd characters in user, password and database names reach the server intact, and no
// connect error carries the password.
#include <casecore/open.hpp>
#include <casecore/postgres/postgres.hpp>
#include <casecore/url.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <pqxx/pqxx>

#include <cstdlib>

using namespace casecore;

namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
std::string percent_encode(const std::string& s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}
} // namespace

TEST_CASE("roles and databases with quotes, spaces, backslashes and '@' connect as named") {
  if (testing::behind_test_pooler()) {
    MESSAGE("skipped behind a pooler: the test pooler logs everyone in as postgres");
    return;
  }
  const auto admin = env("CASECORE_TEST_PG_URL");
  REQUIRE(!admin.empty());
  const std::string role = "o'dd \\ro@le", dbname = "d b'x";
  {
    pqxx::connection c(admin);
    pqxx::nontransaction w(c);
    w.exec("DROP DATABASE IF EXISTS " + w.quote_name(dbname));
    w.exec("DROP ROLE IF EXISTS " + w.quote_name(role));
    w.exec("CREATE ROLE " + w.quote_name(role) + " LOGIN PASSWORD 'p@ss/w:rd''q'");
    w.exec("CREATE DATABASE " + w.quote_name(dbname) + " OWNER " + w.quote_name(role));
  }
  const auto hostport = admin.substr(admin.find('@') + 1, admin.rfind('/') - admin.find('@') - 1);
  auto db = casecore::open("postgresql://" + percent_encode(role) + ":" + percent_encode("p@ss/w:rd'q") + "@" + hostport +
                           "/" + percent_encode(dbname));
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::string>("SELECT current_user"); }) == role);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::string>("SELECT current_database()"); }) == dbname);
  CHECK(db.describe().find("p@ss") == std::string::npos);
}

TEST_CASE("connect errors name the server but never the password") {
  const std::string pw = "Sup3rS3cretPw";
  for (const std::string& url : std::vector<std::string>{"postgresql://alice:" + pw + "@127.0.0.1:1/x", "postgresql://alice:" + pw + "@127.0.0.1:1/x?password=" + pw,
                                "postgresql://alice:" + pw + "@no-such-host.invalid/x?connect_timeout=1"}) {
    CAPTURE(url);
    try {
      casecore::open(url);
      FAIL("connected to nothing");
    } catch (const error& e) {
      CHECK(e.code() == errc::backend_unavailable);
      CHECK(std::string(e.what()).find(pw) == std::string::npos);
    }
  }
  // A server that refuses who we are is a configuration error, not "unavailable", and is not waited for.
  const auto admin = env("CASECORE_TEST_PG_URL");
  try {
    casecore::open(admin.substr(0, admin.rfind('/')) + "/no_such_database_here");
    FAIL("opened a database that does not exist");
  } catch (const error& e) {
    CHECK(e.code() == errc::configuration);
    CHECK_FALSE(e.retryable());
  }
}

TEST_CASE("PostgreSQL URL parameters reach the database options; postgres::open takes a parsed URL") {
  testing::scratch_database s;
  if (s.kind() != testing::backend_kind::postgres) return; // registered for the postgres run only
  const auto base = s.url();
  const char sep = base.find('?') == std::string::npos ? '?' : '&';
  auto db = postgres::open(parse_url(base + sep + "reconnect_budget_ms=0&replica_wait_ms=250&pool_size=3"));
  CHECK(db.options().reconnect_budget == std::chrono::milliseconds(0));
  CHECK(db.options().replica_wait == std::chrono::milliseconds(250));
  CHECK(db.options().pool.size == 3);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT 1"); }) == 1);
  CHECK_THROWS_AS(postgres::open(parse_url("sqlite:x.db")), bad_url); // the adapter checks the scheme itself
  if (testing::behind_test_pooler()) {
    MESSAGE("pooler=none / session skipped behind the test pooler: they declare a direct or session connection");
    return;
  }
  for (const char* mode : {"none", "session"}) {
    CAPTURE(std::string(mode));
    auto m = casecore::open(base + sep + "pooler=" + mode);
    CHECK(m.write([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT 2"); }) == 2);
    CHECK_FALSE(postgres::uses_unnamed_statements(m)); // named statements: nobody declared a transaction pooler
    CHECK(postgres::behind_pooler(m) == (std::string(mode) == "session"));
  }
}

TEST_CASE("connect failures: a server starting, stopping or restarting may come back; a refused role or option never") {
  // Regression (torture.postgres under TSan): a connect that met the server's restart got "FATAL:
  // terminating connection due to administrator command" and was classified configuration, which
  // the unit of work never retries: the worker failed instead of waiting for the server.
  using postgres::classify_connect_failure;
  for (const char* transient :
       {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  terminating connection due to administrator command",
        "FATAL:  terminating connection due to unexpected postmaster exit",
        "FATAL:  the database system is starting up", "FATAL:  the database system is shutting down",
        "FATAL:  sorry, too many clients already", "connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
        "could not translate host name \"db\" to address: Temporary failure in name resolution"}) {
    CAPTURE(transient);
    CHECK(classify_connect_failure(transient) == errc::backend_unavailable);
  }
  for (const char* fatal : {"FATAL:  password authentication failed for user \"alice\"",
                            "FATAL:  database \"nosuch\" does not exist", "invalid connection option \"bogus\"",
                            "invalid sslmode value: \"maybe\""}) {
    CAPTURE(fatal);
    CHECK(classify_connect_failure(fatal) == errc::configuration);
  }
}
