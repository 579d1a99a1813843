// The PostgreSQL adapter hands libpq keyword/value parameters built from the parsed URL, never the
// URL text: odd characters in user, password and database names reach the server intact, and no
// connect error carries the password.
#include <casecore/open.hpp>
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
