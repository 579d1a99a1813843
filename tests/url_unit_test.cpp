#include <casecore/open.hpp>
#include <casecore/url.hpp>
#include <doctest/doctest.h>

using namespace casecore;

TEST_CASE("sqlite URLs parse to a path") {
  CHECK(parse_url("sqlite:relative.db").target == "relative.db");
  CHECK(parse_url("sqlite:///abs/path.db").target == "/abs/path.db");
  CHECK(parse_url("sqlite::memory:").target == ":memory:");
  const auto u = parse_url("sqlite:x.db?pool_size=3&synchronous=full");
  CHECK(u.casecore.at("pool_size") == "3");
  CHECK(u.casecore.at("synchronous") == "full");
}

TEST_CASE("postgresql URLs keep driver options and mask the password") {
  const auto u = parse_url("postgresql://alice:s3cret@db.example:5433/cases?sslmode=disable&pool_size=4");
  CHECK(u.scheme == "postgresql");
  CHECK(u.target == "postgresql://alice:***@db.example:5433/cases"); // the password lives only in u.password
  CHECK(u.user == "alice");
  CHECK(u.password == "s3cret");
  CHECK(u.dbname == "cases");
  REQUIRE(u.hosts.size() == 1);
  CHECK(u.hosts[0].host == "db.example");
  CHECK(u.hosts[0].port == "5433");
  CHECK(u.driver.at("sslmode") == "disable");
  CHECK(u.casecore.at("pool_size") == "4");
  CHECK(u.masked.find("s3cret") == std::string::npos);
  CHECK(u.masked == "postgresql://alice:***@db.example:5433/cases");
  CHECK(parse_url("postgres://h/db").scheme == "postgresql");
  CHECK(parse_url("postgresql://[::1]:5432/db").scheme == "postgresql");
}

TEST_CASE("malformed URLs are a typed bad_url, never a driver exception") {
  for (const char* bad : {"", "nocolon", ":x", "mysql://h/db", "sqlite:", "sqlite://host/x.db", "sqlite:x.db?bogus=1",
                          "sqlite:x.db?pool_size=abc", "postgresql:h/db", "postgresql://h:99999/db",
                          "postgresql://h:port/db", "postgresql://h:/db", "postgresql://@h/db", "postgresql://h/d b",
                          "postgresql://h/db?x", "postgresql://h/db?pool_size=-1", "postgresql://u%zz@h/db",
                          "postgresql://[::1/db", "sqlite:a\nb.db"}) {
    CAPTURE(bad);
    try {
      const auto u = parse_url(bad);
      apply_pool_params(u, *std::make_unique<pool_options>());
      FAIL("accepted a malformed URL");
    } catch (const error& e) {
      CHECK(e.code() == errc::bad_url);
      CHECK_FALSE(e.retryable());
    }
  }
}

TEST_CASE("open() reports an unreachable server as backend_unavailable, an unopenable file as configuration") {
  CHECK_THROWS_AS(open("postgresql://nobody@127.0.0.1:1/none"), backend_unavailable);
  try {
    open("sqlite:///nonexistent-dir-casecore/x/y.db");
    FAIL("expected an error");
  } catch (const error& e) {
    CHECK(e.code() == errc::configuration);
    CHECK_FALSE(e.retryable());
  }
  CHECK_THROWS_AS(open("oracle://x"), bad_url);
}

TEST_CASE("an in-memory database works and is a single connection") {
  auto db = open("sqlite::memory:");
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE t(x INTEGER)");
    tx.exec("INSERT INTO t VALUES($1)", 5);
  });
  CHECK(db.read([](transaction& tx) { return tx.query_one<int>("SELECT x FROM t"); }) == 5);
  CHECK(db.pool_stats().capacity == 1);
}
