#include <casecore/open.hpp>
#include <casecore/url.hpp>
#include <doctest/doctest.h>

#include <chrono>

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
#ifdef CASECORE_WITH_POSTGRES
  CHECK_THROWS_AS(open("postgresql://nobody@127.0.0.1:1/none"), backend_unavailable);
#else // built without PostgreSQL: a postgresql:// URL is unsupported, not unreachable
  try {
    open("postgresql://nobody@127.0.0.1:1/none");
    FAIL("expected an error");
  } catch (const error& e) {
    CHECK(e.code() == errc::unsupported);
  }
#endif
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

TEST_CASE("no bad_url message ever contains the password") {
  // Regression (security review, finding 1): a malformed URL raised bad_url carrying the whole URL.
  const std::string pw = "Sup3rS3cretPw";
  for (const std::string& bad : std::vector<std::string>
       {"postgresql://alice:" + pw + "@db:99999/x", "postgresql://alice:" + pw + "@db:port/x",
        "postgresql://alice:" + pw + "%zz@db/x", "postgresql://alice:" + pw + "/x@db/x", "postgresql://alice:" + pw + "@db/x?bogus=1",
        "postgresql://alice:" + pw + "@db/x?pool_size=abc", "postgresql://alice:" + pw + "@[::1/x",
        "postgresql://alice:" + pw + "@db/x y", "postgresql://alice:" + pw + "@db/x?password=" + pw + "&bogus=2",
        "postgresql://db/x?password=" + pw + "&pool_size=-3", "postgresql://alice:" + pw + "@d@b/x",
        "postgresql://alice:pa@" + pw + "@db/x", "postgres://alice:" + pw + "@db:0/x", "postgresql:alice:" + pw + "@db/x",
        "postgresql://alice:" + pw + "@db/x?sslpassword=" + pw + "&x", "postgresql://alice:" + pw + "@db/x?pooler=maybe",
        "postgresql://alice:" + pw + "@db/x?schema=1bad", "postgresql://alice:" + pw + "@db/x?replication=true",
        // a space inside the password split it from the '@' that mask_secrets looks for (URL fuzzer)
        "postgresql://alice:" + pw + " x@db:5432,h=1?bogus", "postgresql://alice:x " + pw + "@db/x?bogus",
        "sqlite://alice:x " + pw + "@db/x?bogus=1", "sqlite://alice:" + pw + " x@db/x?pool_size=abc"}) {
    CAPTURE(bad);
    try {
      parse_url(bad);
      FAIL("accepted a malformed URL");
    } catch (const error& e) {
      CHECK(e.code() == errc::bad_url);
      CHECK(std::string(e.what()).find(pw) == std::string::npos);
      CHECK(std::string(e.what()).find("S3cret") == std::string::npos);
    }
  }
}

TEST_CASE("an unencoded '@' or '/' in the userinfo is refused rather than split differently than libpq") {
  // Regression (security review, finding 2): casecore masked at the last '@', libpq split at the
  // first, so libpq showed the rest of the password as a host name and sent it to DNS.
  CHECK_THROWS_AS(parse_url("postgresql://alice:pa@ss@db.example/x"), bad_url);
  CHECK_THROWS_AS(parse_url("postgresql://alice:pa/ss@db.example/x"), bad_url);
  const auto u = parse_url("postgresql://al%40ice:pa%40ss%2Fw%3Ard@db.example:5433/x");
  CHECK(u.user == "al@ice");
  CHECK(u.password == "pa@ss/w:rd");
  REQUIRE(u.hosts.size() == 1);
  CHECK(u.hosts[0].host == "db.example");
  CHECK(u.masked.find("pa") == std::string::npos);
}

TEST_CASE("mask_secrets hides every password-like part, also in malformed text") {
  CHECK(mask_secrets("postgresql://u:secret@h/db") == "postgresql://u:***@h/db");
  CHECK(mask_secrets("x postgresql://u:se@cr/et@h/db y") == "x postgresql://u:***@h/db y");
  CHECK(mask_secrets("postgresql://h/db?sslmode=require&password=secret&x=1") == "postgresql://h/db?sslmode=require&password=***&x=1");
  CHECK(mask_secrets("host='h' password='se cr\\'et' user='u'") == "host='h' password=*** user='u'");
  CHECK(mask_secrets("PASSWORD=secret") == "PASSWORD=***");
  CHECK(mask_secrets("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db");
  CHECK(mask_secrets("sqlite:///tmp/a:b@c.db").find("a:b") == std::string::npos); // conservative
}

TEST_CASE("multi-host URLs, casecore parameters and libpq keywords") {
  const auto u = parse_url("postgresql://u@h1:5432,[::1]:5433,h3/db?target_session_attrs=any&pooler=transaction"
                           "&schema=app_1&replicas=r1:5434,r2&connect_timeout=3");
  REQUIRE(u.hosts.size() == 3);
  CHECK(u.hosts[0].host == "h1");
  CHECK(u.hosts[1].host == "::1");
  CHECK(u.hosts[1].port == "5433");
  CHECK(u.hosts[2].port.empty());
  CHECK(u.casecore.at("pooler") == "transaction");
  CHECK(u.casecore.at("schema") == "app_1");
  CHECK(u.casecore.at("replicas") == "r1:5434,r2");
  CHECK(u.driver.at("target_session_attrs") == "any");
  CHECK(u.driver.at("connect_timeout") == "3");
  CHECK_THROWS_AS(parse_url("postgresql://h/db?nonsense=1"), bad_url); // neither casecore's nor libpq's
}

TEST_CASE("URL edge cases: encoded NUL, IPv6 garbage, bad host characters, scheme shapes, parameter ranges") {
  for (const char* bad : {"postgresql://u%00x@h/db", "postgresql://[::1]x/db", "postgresql://h%41/db", "postgresql://h[1/db",
                          "postgresql://h/db?replicas=", "postgresql://h/db?replicas=,r2", "sqlite:x.db?synchronous=sometimes",
                          "postgresql://h/db?pooler=always", "postgresql://h/db?schema=1bad", "postgresql://h/db?schema=" ,
                          "postgresql://h/db?lock_timeout_ms=1099511627777", "postgresql://h/db?lock_timeout_ms=1x",
                          "postgresql://h/d/b", "a_b://h/db", "averyveryverylongschemename1://h/db",
                          "redis+tls://h/db"}) {
    const std::string url = bad;
    CAPTURE(url);
    try {
      parse_url(bad);
      FAIL("accepted a malformed URL");
    } catch (const error& e) {
      CHECK(e.code() == errc::bad_url);
    }
  }
  // Upper-case and mixed-case hex escapes decode alike; the sqlite3 scheme is an alias.
  CHECK(parse_url("postgresql://%41l%69ce@h/db").user == "Alice");
  CHECK(parse_url("postgresql://%61%6C%69%63%65@h/db").user == "alice");
  CHECK(parse_url("sqlite3:x.db").scheme == "sqlite");
  for (const char* sync : {"off", "NORMAL", "Full", "extra"}) CHECK_NOTHROW(parse_url(std::string("sqlite:x.db?synchronous=") + sync));
  CHECK(parse_url("postgresql://h/db?lock_timeout_ms=1099511627776").casecore.at("lock_timeout_ms") == "1099511627776"); // 2^40
}

TEST_CASE("url_param and apply_pool_params: absent keys fall back, bad values and sizes are bad_url with the secret masked") {
  database_url u;
  CHECK(url_param(u, "reconnect_budget_ms", 7) == 7);
  u.casecore["reconnect_budget_ms"] = "250";
  CHECK(url_param(u, "reconnect_budget_ms", 7) == 250);
  for (const char* bad : {"-1", "abc", "12x", "1099511627777", "password=hunter2"}) {
    CAPTURE(bad);
    u.casecore["reconnect_budget_ms"] = bad;
    try {
      url_param(u, "reconnect_budget_ms", 7);
      FAIL("accepted a bad value");
    } catch (const error& e) {
      CHECK(e.code() == errc::bad_url);
      CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    }
  }
  pool_options p;
  database_url sizes;
  sizes.casecore["pool_size"] = "10001";
  CHECK_THROWS_AS(apply_pool_params(sizes, p), bad_url);
  sizes.casecore["pool_size"] = "4";
  sizes.casecore["pool_overflow"] = "10001";
  CHECK_THROWS_AS(apply_pool_params(sizes, p), bad_url);
  sizes.casecore["pool_overflow"] = "10000";
  sizes.casecore["acquire_timeout_ms"] = "1500";
  pool_options ok;
  apply_pool_params(sizes, ok);
  CHECK(ok.size == 4);
  CHECK(ok.overflow == 10000);
  CHECK(ok.acquire_timeout == std::chrono::milliseconds(1500));
}

#ifdef CASECORE_WITH_POSTGRES // without PostgreSQL, open() of a postgresql URL is `unsupported` (tested above)
TEST_CASE("open() reports a libpq option libpq refuses as configuration at once, never as a server to wait for") {
  for (const char* opt : {"sslmode=bogus", "target_session_attrs=bogus", "connect_timeout=abc"}) {
    const std::string url = std::string("postgresql://nobody@127.0.0.1:1/none?") + opt;
    CAPTURE(url);
    const auto start = std::chrono::steady_clock::now();
    try {
      open(url);
      FAIL("opened with an invalid option");
    } catch (const error& e) {
      CHECK(e.code() == errc::configuration);
      CHECK_FALSE(e.retryable());
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10)); // not the 15 s reconnect budget
  }
}
#endif

TEST_CASE("the printable form of a SQLite URL masks text that looks like a password too") {
  // URL fuzzer: a SQLite path holding "user:password@host" was printed as it was.
  const auto u = parse_url("sqlite:x://alice:Sup3rS3cretPw@db/cases.db");
  CHECK(u.target == "x://alice:Sup3rS3cretPw@db/cases.db"); // the file path itself is untouched
  CHECK(u.masked.find("Sup3rS3cretPw") == std::string::npos);
  CHECK(parse_url("sqlite:/var/lib/app/cases.db").masked == "sqlite:/var/lib/app/cases.db");
}
