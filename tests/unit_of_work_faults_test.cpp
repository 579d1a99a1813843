// The unit of work under injected faults: every `catch` of database.cpp, transaction.cpp and
// pool.cpp reached on purpose, with the contract each one keeps. Faults come from the testing kit's
// step gate (fail_at a named step, casecore/testing/steps.hpp) and from a wrapper around the real
// backend that fails one chosen call (connect, or a script such as ROLLBACK TO SAVEPOINT) exactly
// as a dropped connection would. Both backends.
#include <casecore/detail/backend.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/steps.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;
using casecore::testing::step_gate;

namespace {

// What the wrapper fails: the next connect()s, the next exec_script whose SQL starts with a prefix,
// and (bumping `epoch`) every connection opened so far, which then reports itself broken.
struct fault_plan {
  std::atomic<int> connects_to_fail{0};
  std::string script_prefix;
  std::atomic<int> scripts_to_fail{0};
  std::atomic<int> connects{0};
  std::atomic<int> epoch{0};
};

class faulty_connection final : public detail::connection {
public:
  faulty_connection(std::unique_ptr<detail::connection> inner, fault_plan& plan)
      : inner_(std::move(inner)), plan_(plan), born_(plan.epoch) {}
  result exec(std::string_view sql, std::span<const value> params) override { return inner_->exec(sql, params); }
  void exec_script(std::string_view sql) override {
    if (!plan_.script_prefix.empty() && sql.starts_with(plan_.script_prefix) && plan_.scripts_to_fail.fetch_sub(1) > 0) {
      broken_ = true; // as a real dropped connection: the pool must discard it
      raise(errc::connection_lost, "injected: connection lost during '" + std::string(sql.substr(0, 40)) + "'");
    }
    inner_->exec_script(sql);
  }
  void begin(const detail::tx_settings& s) override { inner_->begin(s); }
  void commit() override { inner_->commit(); }
  void rollback() noexcept override {
    if (!broken()) inner_->rollback();
  }
  bool ping() noexcept override { return !broken() && inner_->ping(); }
  bool broken() const noexcept override { return broken_ || born_ < plan_.epoch || inner_->broken(); }
  casecore::dialect dialect() const noexcept override { return inner_->dialect(); }
  const sql_fragments& sql() const noexcept override { return inner_->sql(); }

private:
  std::unique_ptr<detail::connection> inner_;
  fault_plan& plan_;
  int born_;
  bool broken_ = false;
};

class faulty_backend final : public detail::backend {
public:
  faulty_backend(std::shared_ptr<detail::backend> inner, fault_plan& plan) : inner_(std::move(inner)), plan_(plan) {}
  std::unique_ptr<detail::connection> connect() override {
    ++plan_.connects;
    if (plan_.connects_to_fail.fetch_sub(1) > 0) raise(errc::backend_unavailable, "injected: server not reachable");
    return std::make_unique<faulty_connection>(inner_->connect(), plan_);
  }
  casecore::dialect dialect() const noexcept override { return inner_->dialect(); }
  std::string describe() const override { return inner_->describe(); }

private:
  std::shared_ptr<detail::backend> inner_;
  fault_plan& plan_;
};

database open_faulty(const scratch_database& s, fault_plan& plan, database_options o = {}) {
  auto inner = casecore::make_backend(s.url(), o);
  return database(std::make_shared<faulty_backend>(std::move(inner), plan), o);
}

void make_table(database& db) {
  db.write([](transaction& tx) { tx.exec_script("CREATE TABLE uow_t(v BIGINT NOT NULL)"); });
}

std::int64_t rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM uow_t"); });
}

} // namespace

TEST_CASE("an outcome_unknown at commit runs no hook, is counted, and is never retried") {
  scratch_database s;
  auto db = s.open();
  make_table(db);
  const auto commits_before = db.tx_stats().commits;
  step_gate gate;
  gate.fail_at("tx.before_commit", errc::outcome_unknown);
  int attempts = 0, commit_hooks = 0, rollback_hooks = 0;
  CHECK_THROWS_AS(db.write([&](transaction& tx) {
    ++attempts;
    tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    tx.after_commit([&] { ++commit_hooks; });
    tx.after_rollback([&] { ++rollback_hooks; });
  }),
                  outcome_unknown);
  CHECK(attempts == 1);
  CHECK(commit_hooks == 0);
  CHECK(rollback_hooks == 0);
  CHECK(db.tx_stats().outcome_unknown == 1);
  CHECK(db.tx_stats().commits == commits_before);
  CHECK(rows(db) == 0); // the injection struck before COMMIT was sent: nothing committed
}

TEST_CASE("an unreachable server at BEGIN is waited for within the reconnect budget, then given up") {
  scratch_database s;
  auto db = s.open();
  make_table(db);
  {
    step_gate gate;
    gate.fail_at("tx.begun", errc::backend_unavailable);
    int attempts = 0, rollback_hooks = 0;
    db.write([&](transaction& tx) {
      ++attempts;
      tx.after_rollback([&] { ++rollback_hooks; });
      tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    });
    CHECK(attempts == 1);       // the failed attempt never reached the body (the step precedes it)
    CHECK(rollback_hooks == 0);
    CHECK(db.tx_stats().retries_reconnect == 1);
    CHECK(rows(db) == 1);
  }
  {
    step_gate gate;
    gate.fail_at("tx.begun", errc::backend_unavailable);
    write_options o;
    o.reconnect_budget = 0ms;
    CHECK_THROWS_AS(db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(2)"); }, o), backend_unavailable);
    CHECK(rows(db) == 1);
  }
}

TEST_CASE("a retryable fault is retried within the budget; beyond it, and for other errors, it is thrown") {
  scratch_database s;
  auto db = s.open();
  make_table(db);
  {
    step_gate gate;
    gate.fail_at("tx.before_commit", errc::serialization_failure);
    int rollback_hooks = 0;
    db.write([&](transaction& tx) {
      tx.after_rollback([&] { ++rollback_hooks; });
      tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    });
    CHECK(rollback_hooks == 1); // the failed attempt's hook, once
    CHECK(db.tx_stats().retries_serialization == 1);
    CHECK(rows(db) == 1);
  }
  for (const auto code : {errc::deadlock, errc::connection_lost, errc::busy}) {
    step_gate gate;
    gate.fail_at("tx.before_commit", code);
    db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(1)"); });
  }
  CHECK(db.tx_stats().retries_deadlock == 1);
  CHECK(db.tx_stats().retries_connection == 1);
  CHECK(db.tx_stats().retries_busy == 1);
  CHECK(rows(db) == 4);
  db.write([](transaction& tx) { tx.exec("DELETE FROM uow_t WHERE v = 1"); });
  db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(1)"); });
  {
    step_gate gate;
    gate.fail_at("tx.before_commit", errc::deadlock);
    write_options o;
    o.retry = retry_policy::none();
    CHECK_THROWS_WITH_AS(db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(2)"); }, o),
                         doctest::Contains("injected"), error);
    CHECK(rows(db) == 1);
  }
  {
    step_gate gate;
    gate.fail_at("tx.before_commit", errc::backend_error);
    int attempts = 0;
    CHECK_THROWS_AS(db.write([&](transaction& tx) {
      ++attempts;
      tx.exec("INSERT INTO uow_t(v) VALUES(3)");
    }),
                    error);
    CHECK(attempts == 1);
    CHECK(rows(db) == 1);
  }
}

TEST_CASE("a foreign exception from the body rolls back, runs the rollback hooks and propagates unchanged") {
  scratch_database s;
  auto db = s.open();
  make_table(db);
  int rollback_hooks = 0;
  CHECK_THROWS_AS(db.write([&](transaction& tx) {
    tx.after_rollback([&] { ++rollback_hooks; });
    tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    throw std::runtime_error("host code failed");
  }),
                  std::runtime_error);
  CHECK(rollback_hooks == 1);
  CHECK(db.tx_stats().rollbacks == 1);
  CHECK(rows(db) == 0);
}

TEST_CASE("a throwing on_hook_error callback does not stop the other hooks") {
  scratch_database s;
  database_options o;
  int calls = 0;
  o.on_hook_error = [&](std::exception_ptr) {
    ++calls;
    throw std::runtime_error("the error callback itself failed");
  };
  auto db = s.open(o);
  make_table(db);
  int ran = 0;
  db.write([&](transaction& tx) {
    tx.after_commit([] { throw std::runtime_error("first hook"); });
    tx.after_commit([&] { ++ran; });
    tx.after_commit([] { throw std::runtime_error("third hook"); });
    tx.after_commit([&] { ++ran; });
  });
  CHECK(ran == 2);
  CHECK(calls == 2);
  CHECK(db.tx_stats().hook_failures == 2);
}

TEST_CASE("a swallowed failure of a script poisons the transaction: the commit is refused") {
  scratch_database s;
  auto db = s.open();
  make_table(db);
  CHECK_THROWS_WITH_AS(db.write([](transaction& tx) {
    tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    try {
      tx.exec_script("THIS IS NOT SQL");
    } catch (const error&) { // swallowed on purpose
    }
  }),
                       doctest::Contains("swallowed"), error);
  CHECK(rows(db) == 0);
}

TEST_CASE("a savepoint whose ROLLBACK TO fails leaves the whole transaction poisoned; nothing commits") {
  scratch_database s;
  fault_plan plan;
  auto db = open_faulty(s, plan);
  make_table(db);
  plan.script_prefix = "ROLLBACK TO SAVEPOINT";
  plan.scripts_to_fail = 1;
  int attempts = 0, inner_rollback_hooks = 0;
  write_options o;
  o.retry = retry_policy::none();
  CHECK_THROWS_AS(db.write([&](transaction& tx) {
    ++attempts;
    tx.exec("INSERT INTO uow_t(v) VALUES(1)");
    try {
      tx.savepoint([&](transaction& t) {
        t.after_rollback([&] { ++inner_rollback_hooks; });
        t.exec("INSERT INTO uow_t(v) VALUES(2)");
        raise(errc::invalid_argument, "undo the savepoint");
      });
    } catch (const invalid_argument&) { // expected: the savepoint's own error
    }
    CHECK(tx.poisoned()); // the savepoint could not be undone: only the whole transaction can be
  }, o),
                  error);
  CHECK(attempts == 1);
  CHECK(inner_rollback_hooks == 1); // the savepoint's work is gone either way: its hook ran
  CHECK(rows(db) == 0);
  // The broken connection was discarded; the next unit of work gets a fresh one and succeeds.
  db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(3)"); });
  CHECK(rows(db) == 1);
}

TEST_CASE("a failed connect gives its pool slot back; the unit of work waits and reconnects") {
  scratch_database s;
  fault_plan plan;
  database_options o;
  o.pool.size = 1;
  o.pool.overflow = 0;
  auto db = open_faulty(s, plan, o);
  make_table(db);
  REQUIRE(db.pool_stats().idle == 1);
  // The idle connection dies; its replacement (connect_in_slot(true)) and the next connect fail.
  ++plan.epoch;
  plan.connects_to_fail = 2;
  const auto connects_before = plan.connects.load();
  db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(1)"); });
  CHECK(plan.connects - connects_before == 3); // two injected failures, then a real connection
  CHECK(db.tx_stats().retries_reconnect == 2);
  auto p = db.pool_stats();
  CHECK(p.in_use == 0);
  CHECK(p.idle == 1); // the slot came back after each failure: with a pool of one, a leak would block
  CHECK(rows(db) == 1);
  // With no reconnect budget the failure is immediate, and the slot is still returned.
  ++plan.epoch;
  plan.connects_to_fail = 1;
  write_options none;
  none.reconnect_budget = 0ms;
  CHECK_THROWS_AS(db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(2)"); }, none), backend_unavailable);
  p = db.pool_stats();
  CHECK(p.in_use == 0);
  db.write([](transaction& tx) { tx.exec("INSERT INTO uow_t(v) VALUES(2)"); });
  CHECK(rows(db) == 2);
}
