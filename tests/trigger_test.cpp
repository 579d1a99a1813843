// The database nonce store: one signed request is accepted once across threads and processes.
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <casecore/trigger.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <iostream>

using namespace casecore;
using namespace casecore::trigger;
using casecore::testing::scratch_database;

namespace {
const std::string key = "0f8e2b6a9c4d7e1f3a5b8c0d2e4f6a7b9c1d3e5f";
constexpr std::int64_t now = 1'750'000'000;
} // namespace

CASECORE_CHILD(trigger_verify) {
  auto db = casecore::open(args.at(0));
  verifier v(key, std::make_shared<database_nonce_store>(db));
  std::cout << to_string(v.check("POST", "/cron", "x", args.at(1), now)) << "\n";
  return 0;
}

TEST_CASE("database nonce store: a request replayed from many processes and threads is accepted once") {
  scratch_database s;
  auto db = s.open();
  migrate(db);
  const auto header = signer(key).sign("POST", "/cron", "x", now, "nonce-shared-000000001");
  std::atomic<int> accepted{0};
  std::thread local([&] {
    verifier v(key, std::make_shared<database_nonce_store>(db));
    casecore::testing::race(8, [&](std::size_t) {
      if (v.check("POST", "/cron", "x", header, now) == verdict::ok) ++accepted;
    });
  });
  const auto results = casecore::testing::run_children("trigger_verify", 4, {s.url(), header});
  local.join();
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    if (r.output == "ok\n") ++accepted;
    else CHECK(r.output == "replayed\n");
  }
  CHECK(accepted == 1);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_trigger_nonces"); }) == 1);
}

TEST_CASE("database nonce store: expired nonces are pruned and can be stored again") {
  scratch_database s;
  auto db = s.open();
  migrate(db);
  database_nonce_store store(db);
  CHECK(store.remember("nonce-aaaaaaaaaaaaaaaa", now, now + 10) == remembered::stored);
  CHECK(store.remember("nonce-aaaaaaaaaaaaaaaa", now + 5, now + 15) == remembered::seen);
  CHECK(store.remember("nonce-bbbbbbbbbbbbbbbb", now + 11, now + 20) == remembered::stored);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_trigger_nonces"); }) == 1);
  CHECK(store.remember("nonce-aaaaaaaaaaaaaaaa", now + 11, now + 21) == remembered::stored);
}
