// The database nonce store: one signed request is accepted once across threads and processes, and
// across verifying hosts whose clocks disagree (the store prunes by the database clock).
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <casecore/trigger.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>


using namespace casecore;
using namespace casecore::trigger;
using casecore::testing::scratch_database;

namespace {

const std::string key = "0f8e2b6a9c4d7e1f3a5b8c0d2e4f6a7b9c1d3e5f";

// The verifying hosts' clocks are real now: the database store compares them with its own clock.
std::int64_t real_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::int64_t nonce_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_trigger_nonces"); });
}

// Runs this test binary's child `name` under libfaketime, its clock shifted by `offset` ("+30s").
struct skewed_child {
  int code = -1;
  std::string out;
};

skewed_child run_skewed(const std::string& offset, const std::string& name, const std::vector<std::string>& args) {
  auto r = casecore::testing::run_skewed_child(offset, name, args);
  return {r.exit_code, std::move(r.out)};
}

} // namespace

CASECORE_CHILD(trigger_verify) {
  auto db = casecore::open(args.at(0));
  verifier v(key, std::make_shared<database_nonce_store>(db));
  std::cout << to_string(v.check("POST", "/cron", "x", args.at(1), std::stoll(args.at(2)))) << "\n";
  return 0;
}

// A verifying host: checks header args[1] on its own (possibly faked) clock; prints the verdict or
// the error code.
CASECORE_CHILD(trigger_host) {
  auto db = casecore::open(args.at(0));
  verifier v(key, std::make_shared<database_nonce_store>(db));
  try {
    std::cout << to_string(v.check("POST", "/cron", "x", args.at(1))) << "\n";
  } catch (const casecore::error& e) {
    std::cout << "error:" << casecore::to_string(e.code()) << "\n";
  }
  return 0;
}

TEST_CASE("database nonce store: a request replayed from many processes and threads is accepted once") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto now = real_now();
  const auto header = signer(key).sign("POST", "/cron", "x", now, "nonce-shared-000000001");
  std::atomic<int> accepted{0};
  std::thread local([&] {
    verifier v(key, std::make_shared<database_nonce_store>(db));
    casecore::testing::race(8, [&](std::size_t) {
      if (v.check("POST", "/cron", "x", header, now) == verdict::ok) ++accepted;
    });
  });
  const auto results = casecore::testing::run_children("trigger_verify", 4, {s.url(), header, std::to_string(now)});
  local.join();
  for (const auto& r : results) {
    CHECK(r.exit_code == 0);
    if (r.output == "ok\n") ++accepted;
    else CHECK(r.output == "replayed\n");
  }
  CHECK(accepted == 1);
  CHECK(nonce_rows(db) == 1);
}

TEST_CASE("database nonce store: nonces expired on the database clock are pruned and can be stored again") {
  scratch_database s;
  auto db = s.open_migrated();
  database_nonce_store store(db);
  const auto now = real_now();
  CHECK(store.remember({"nonce-aaaaaaaaaaaaaaaa", now, now + 100, 60}) == remembered::stored);
  CHECK(store.remember({"nonce-aaaaaaaaaaaaaaaa", now, now + 100, 60}) == remembered::seen);
  // Rows whose expiry has passed on the database clock: one to prune, one to take over.
  db.write([&](transaction& tx) {
    tx.exec("INSERT INTO casecore_trigger_nonces(nonce, expires_at) VALUES('nonce-old-000000000001', $1), "
            "('nonce-old-000000000002', $1)",
            now - 5);
  });
  CHECK(nonce_rows(db) == 3);
  CHECK(store.remember({"nonce-bbbbbbbbbbbbbbbb", now, now + 100, 60}) == remembered::stored);
  CHECK(nonce_rows(db) == 2); // both old rows pruned
  CHECK(store.remember({"nonce-aaaaaaaaaaaaaaaa", now, now + 100, 60}) == remembered::seen);
}

// Issue 10 defect 5: a host 30 s ahead pruned a nonce by ITS clock, and the captured request replayed
// to a second host inside that host's window was accepted. Both hosts are within the 60 s skew bound.
TEST_CASE("database nonce store: two verifiers with skewed clocks never accept a replay") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto store = std::make_shared<database_nonce_store>(db);
  verifier on_time(key, store);          // host B: its clock is the database's
  verifier ahead(key, store);            // host A: 30 s ahead
  const auto t0 = real_now();
  signer sign(key);
  // Captured request, 290 s old: still inside B's 300 s window.
  const auto captured = sign.sign("POST", "/cron", "x", t0 - 290, "nonce-captured-00000001");
  CHECK(on_time.check("POST", "/cron", "x", captured, t0) == verdict::ok);
  // A verifies some other fresh request; it must not make the store forget the captured nonce.
  CHECK(ahead.check("POST", "/cron", "x", sign.sign("POST", "/cron", "x", t0 + 30, "nonce-fresh-0000000001"), t0 + 30) ==
        verdict::ok);
  // The replay to B, still inside B's window, is refused.
  CHECK(on_time.check("POST", "/cron", "x", captured, t0) == verdict::replayed);
  CHECK(ahead.check("POST", "/cron", "x", captured, t0 + 30) == verdict::expired);

  // A host further off than max_clock_skew is refused outright (fail closed), and stores nothing.
  const auto before = nonce_rows(db);
  verifier far_off(key, store);
  try {
    far_off.check("POST", "/cron", "x", sign.sign("POST", "/cron", "x", t0 + 120, "nonce-faroff-000000001"), t0 + 120);
    FAIL("a host 120 s off the database clock was accepted");
  } catch (const casecore::error& e) {
    CHECK(e.code() == errc::configuration);
  }
  CHECK(nonce_rows(db) == before);
}

// The same across processes whose clocks really are skewed (libfaketime), on PostgreSQL, where the
// database clock is the server's and not the verifying process's.
TEST_CASE("database nonce store: verifier processes with faked clocks never accept a replay") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres) {
    MESSAGE("SQLite's database clock is the verifying process's own clock: covered by the injected-clock test");
    return;
  }
  if (::access("/usr/bin/faketime", X_OK) != 0) {
    MESSAGE("skipped: /usr/bin/faketime (libfaketime) is not installed");
    return;
  }
  auto db = s.open_migrated();
  const auto t0 = real_now();
  signer sign(key);
  const auto captured = sign.sign("POST", "/cron", "x", t0 - 285, "nonce-captured-faked01");
  auto r = run_skewed("+0s", "trigger_host", {s.url(), captured});
  CHECK(r.out == "ok\n");
  r = run_skewed("+30s", "trigger_host", {s.url(), sign.sign("POST", "/cron", "x", t0 + 30, "nonce-fresh-faked00001")});
  CHECK(r.out == "ok\n");
  r = run_skewed("-20s", "trigger_host", {s.url(), captured});
  CHECK(r.out == "replayed\n");
  r = run_skewed("+0s", "trigger_host", {s.url(), captured});
  CHECK(r.out == "replayed\n");
  r = run_skewed("+300s", "trigger_host", {s.url(), sign.sign("POST", "/cron", "x", t0 + 300, "nonce-faroff-faked0001")});
  CHECK(r.out == "error:configuration\n");
}
