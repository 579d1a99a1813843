// The fault injector drives the real retry path: injected busy / serialization / dropped-connection
// faults are retried, no committed work is lost and no work is applied twice.
#include <casecore/testing/faults.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

using namespace casecore;

TEST_CASE("injected transient faults are retried and lose or duplicate nothing") {
  testing::scratch_database s;
  auto plain = s.open();
  plain.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE tally(id INTEGER PRIMARY KEY, n BIGINT NOT NULL)");
    tx.exec("INSERT INTO tally VALUES(1, 0)");
  });
  auto injector = std::make_shared<testing::fault_injector>(testing::fault_options{0.05, 0.05, 0.05, 42});
  database_options o;
  o.retry.max_attempts = 100;
  auto db = testing::open_with_faults(s.url(), injector, o);
  std::atomic<int> acknowledged{0};
  testing::race(6, [&](std::size_t) {
    for (int i = 0; i < 50; ++i) {
      db.write([](transaction& tx) { tx.exec("UPDATE tally SET n = n + 1 WHERE id = 1"); });
      ++acknowledged;
    }
  });
  const auto c = injector->counts();
  CHECK(c.busy > 0);
  CHECK(c.serialization > 0);
  CHECK(c.disconnect > 0);
  const auto m = db.tx_stats();
  CHECK(m.retries_busy == c.busy);
  CHECK(m.retries_serialization == c.serialization);
  CHECK(m.retries_connection == c.disconnect);
  CHECK(db.pool_stats().reconnects + db.pool_stats().opened > 6);
  CHECK(plain.read([](transaction& tx) { return tx.query_one<int>("SELECT n FROM tally WHERE id = 1"); }) == acknowledged.load());
  CHECK(acknowledged == 300);
}

TEST_CASE("fault rates are validated") {
  CHECK_THROWS_AS(testing::fault_injector(testing::fault_options{-0.1, 0, 0, 0}), invalid_argument);
  CHECK_THROWS_AS(testing::fault_injector(testing::fault_options{0.6, 0.6, 0, 0}), invalid_argument);
  CHECK_THROWS_AS(testing::fault_injector(testing::fault_options{0, 1.5, 0, 0}), invalid_argument);
  CHECK_THROWS_AS(testing::fault_injector(testing::fault_options{0, 0, -0.5, 0}), invalid_argument);
  CHECK_THROWS_AS(testing::fault_injector(testing::fault_options{0, 0.5, 0.6, 0}), invalid_argument);
  CHECK_NOTHROW(testing::fault_injector(testing::fault_options{0.2, 0.3, 0.5, 0})); // a sum of exactly 1
}

TEST_CASE("a database with injected faults says so in its description") {
  testing::scratch_database s;
  auto injector = std::make_shared<testing::fault_injector>(testing::fault_options{0, 0, 0, 1});
  auto db = testing::open_with_faults(s.url(), injector);
  CHECK(db.describe().ends_with(" (with injected faults)"));
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT 1"); }) == 1);
}
