// Versioned repositories: CRUD with optimistic versions, modify, deltas with bounds, state machines,
// child replacement, bulk updates. Threads and processes, both backends.
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/repository.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <random>
#include <set>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {

struct work_order {
  std::string title;
  std::string status = "draft";
  std::int64_t qty = 0;
  std::optional<std::string> note;
};

struct order_line {
  std::int64_t line_no = 0;
  std::string sku;
};

const repository<work_order>& orders() {
  static const repository<work_order> repo({"work_orders", "id",
                                             {column("title", &work_order::title), column("status", &work_order::status),
                                              column("qty", &work_order::qty), column("note", &work_order::note)}});
  return repo;
}

const child_descriptor<order_line>& lines() {
  static const child_descriptor<order_line> d{
      "order_lines", "order_id", {column("line_no", &order_line::line_no), column("sku", &order_line::sku)}, "line_no"};
  return d;
}

const state_machine& workflow() {
  static const state_machine m("status", {{"draft", "submitted"}, {"submitted", "approved"}, {"submitted", "draft"}});
  return m;
}

database migrated(const scratch_database& s) {
  auto db = s.open();
  const std::vector<migration> mine{
      orders().create_table_migration("test", 1),
      {"test", 2, "lines", "CREATE TABLE order_lines(order_id BIGINT NOT NULL, line_no BIGINT NOT NULL, sku TEXT NOT NULL)", "", ""}};
  migrate(db, mine);
  return db;
}

write_options as(std::string actor) {
  write_options o;
  o.actor = std::move(actor);
  o.retry = retry_policy{};
  o.retry->max_attempts = 1000;
  o.retry->budget = std::chrono::seconds(120);
  return o;
}

std::int64_t new_order(database& db, std::int64_t qty = 0) {
  return db.write([&](transaction& tx) { return orders().insert(tx, {"wo", "draft", qty, std::nullopt}).id; });
}

record<work_order> load(database& db, std::int64_t id) {
  return db.read([&](transaction& tx) { return orders().get(tx, id); });
}

} // namespace

TEST_CASE("insert, get, find_by, update and remove with versions") {
  scratch_database s;
  auto db = migrated(s);
  auto r = db.write([](transaction& tx) { return orders().insert(tx, {"pump", "draft", 3, "urgent"}); }, as("ann"));
  CHECK(r.id > 0);
  CHECK(r.version == 1);
  CHECK(r.updated_by == "ann");
  CHECK(r.created_at > 0);
  auto got = load(db, r.id);
  CHECK(got.data.title == "pump");
  CHECK(got.data.note == std::optional<std::string>("urgent"));
  got.data.note.reset();
  got.data.title = "valve";
  db.write([&](transaction& tx) { orders().update(tx, got); }, as("bob"));
  CHECK(got.version == 2);
  auto again = load(db, r.id);
  CHECK(again.data.title == "valve");
  CHECK_FALSE(again.data.note.has_value());
  CHECK(again.updated_by == "bob");
  CHECK(again.version == 2);
  db.read([&](transaction& tx) {
    CHECK(orders().find_by(tx, "title", "valve").size() == 1);
    CHECK(orders().find_by(tx, "title", "pump").empty());
    CHECK_FALSE(orders().find(tx, 9999).has_value());
    CHECK_THROWS_AS(orders().get(tx, 9999), not_found);
  });
  auto with_id = db.write([](transaction& tx) { return orders().insert(tx, {"x", "draft", 0, {}}, 500); });
  CHECK(with_id.id == 500);
  CHECK_THROWS_AS(db.write([](transaction& tx) { orders().insert(tx, {"y", "draft", 0, {}}, 500); }), already_exists);
  db.write([&](transaction& tx) { orders().remove(tx, r.id, 2); });
  CHECK_THROWS_AS(load(db, r.id), not_found);
}

TEST_CASE("a stale update or remove is a version_conflict that says who changed it and when") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db);
  auto mine = load(db, id);
  auto theirs = load(db, id);
  theirs.data.title = "theirs";
  db.write([&](transaction& tx) { orders().update(tx, theirs); }, as("carol"));
  mine.data.title = "mine";
  try {
    db.write([&](transaction& tx) { orders().update(tx, mine); }, as("dave"));
    FAIL("expected a version conflict");
  } catch (const version_conflict& e) {
    CHECK(e.expected_version() == 1);
    CHECK(e.current_version() == 2);
    CHECK(e.updated_by() == "carol");
    CHECK(e.updated_at_us() == theirs.updated_at);
    CHECK(e.conflict());
  }
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().remove(tx, id, 1); }), version_conflict);
  CHECK(load(db, id).data.title == "theirs");
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().remove(tx, 4242, 1); }), not_found);
  CHECK(db.tx_stats().conflicts == 2); // counted once, by the unit of work (defect 11)
}

TEST_CASE("threads: K concurrent modify increments give exactly K") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db);
  constexpr int threads = 8, per = 15;
  casecore::testing::race(threads, [&](std::size_t t) {
    for (int i = 0; i < per; ++i)
      orders().modify(db, id, [](work_order& w) { w.qty += 1; }, as("t" + std::to_string(t)));
  });
  auto r = load(db, id);
  CHECK(r.data.qty == threads * per);
  CHECK(r.version == 1 + threads * per);
}

CASECORE_CHILD(repo_modify) {
  auto db = casecore::open(args.at(0));
  const auto id = std::stoll(args.at(1));
  for (int i = 0; i < std::stoi(args.at(2)); ++i) {
    orders().modify(db, id, [](work_order& w) { w.qty += 1; }, as("p"));
    db.write([&](transaction& tx) { orders().add(tx, id, "qty", 1); }, as("p"));
  }
  return 0;
}

TEST_CASE("processes: concurrent modify and deltas lose no update") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db);
  const auto results = casecore::testing::run_children("repo_modify", 4, {s.url(), std::to_string(id), "15"});
  for (const auto& r : results) CHECK(r.exit_code == 0);
  auto r = load(db, id);
  CHECK(r.data.qty == 4 * 15 * 2);
  CHECK(r.version == 1 + 4 * 15 * 2);
}

TEST_CASE("deltas are atomic, bump the version and never cross their bound") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db, 50);
  std::atomic<int> taken{0}, refused{0};
  casecore::testing::race(8, [&](std::size_t) {
    for (int i = 0; i < 10; ++i) {
      try {
        db.write([&](transaction& tx) { orders().add(tx, id, "qty", -1, {.min = 0, .max = std::nullopt}); }, as("picker"));
        ++taken;
      } catch (const error& e) {
        CHECK(e.code() == errc::constraint_violation);
        ++refused;
      }
    }
  });
  CHECK(taken == 50);
  CHECK(refused == 30);
  auto r = load(db, id);
  CHECK(r.data.qty == 0);
  CHECK(r.version == 51);
  db.write([&](transaction& tx) {
    CHECK(orders().add(tx, id, "qty", 7, {.min = std::nullopt, .max = 10}) == 7);
    CHECK_THROWS_AS(orders().add(tx, id, "qty", 4, {.min = std::nullopt, .max = 10}), error);
    CHECK(orders().add(tx, id, "qty", 3, {.min = 0, .max = 10}) == 10);
    CHECK_THROWS_AS(orders().add(tx, 9999, "qty", 1), not_found);
  });
  CHECK(load(db, id).data.qty == 10);
}

TEST_CASE("state machine: one compare-and-set, illegal or stale transitions change nothing") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().transition(tx, id, workflow(), "draft", "approved"); }),
                  invalid_transition);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().transition(tx, id, workflow(), "submitted", "approved"); }),
                  invalid_transition); // legal edge, but the row is in draft
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().transition(tx, id, workflow(), "draft", "submitted", 7); }),
                  invalid_transition); // stale version
  CHECK(load(db, id).version == 1);
  CHECK(load(db, id).data.status == "draft");
  std::atomic<int> won{0}, lost{0};
  casecore::testing::race(8, [&](std::size_t t) {
    try {
      db.write([&](transaction& tx) { orders().transition(tx, id, workflow(), "draft", "submitted", 1); },
               as("t" + std::to_string(t)));
      ++won;
    } catch (const invalid_transition&) {
      ++lost;
    }
  });
  CHECK(won == 1);
  CHECK(lost == 7);
  auto r = load(db, id);
  CHECK(r.data.status == "submitted");
  CHECK(r.version == 2);
  CHECK(db.write([&](transaction& tx) { return orders().transition(tx, id, workflow(), "submitted", "approved"); }) == 3);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().transition(tx, 9999, workflow(), "draft", "submitted"); }),
                  not_found);
}

TEST_CASE("child replacement is atomic and bumps the parent") {
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db);
  db.write([&](transaction& tx) { orders().replace_children(tx, id, lines(), {{1, "a"}, {2, "b"}}, 1); });
  CHECK(load(db, id).version == 2);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { orders().replace_children(tx, id, lines(), {{9, "z"}}, 1); }),
                  version_conflict);
  // Concurrent replacements: the final set is exactly one writer's set, never a mix.
  constexpr int threads = 6;
  casecore::testing::race(threads, [&](std::size_t t) {
    std::vector<order_line> mine;
    for (int i = 0; i < 3; ++i) mine.push_back({i, "t" + std::to_string(t)});
    db.write([&](transaction& tx) { orders().replace_children(tx, id, lines(), mine); }, as("r"));
  });
  auto kids = db.read([&](transaction& tx) { return orders().children(tx, id, lines()); });
  REQUIRE(kids.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(kids[static_cast<std::size_t>(i)].line_no == i);
    CHECK(kids[static_cast<std::size_t>(i)].sku == kids[0].sku);
  }
  CHECK(load(db, id).version == 2 + threads);
}

TEST_CASE("bulk set_where bumps every touched version") {
  scratch_database s;
  auto db = migrated(s);
  const auto a = new_order(db), b = new_order(db);
  db.write([&](transaction& tx) { orders().transition(tx, b, workflow(), "draft", "submitted"); });
  CHECK(db.write([](transaction& tx) { return orders().set_where(tx, "note", "frozen", "status", "draft"); }) == 1);
  CHECK(load(db, a).version == 2);
  CHECK(load(db, a).data.note == std::optional<std::string>("frozen"));
  CHECK(load(db, b).version == 2);
  CHECK_FALSE(load(db, b).data.note.has_value());
}

TEST_CASE("bad input is a typed error and writes nothing") {
  CHECK_THROWS_AS(repository<work_order>({"work orders", "id", {column("title", &work_order::title)}}), invalid_argument);
  CHECK_THROWS_AS(repository<work_order>({"w", "id", {column("title;--", &work_order::title)}}), invalid_argument);
  CHECK_THROWS_AS(repository<work_order>({"w", "id", {column("version", &work_order::qty)}}), invalid_argument);
  CHECK_THROWS_AS(repository<work_order>({"w", "id", {}}), invalid_argument);
  CHECK_THROWS_AS(state_machine("status x", {}), invalid_argument);
  scratch_database s;
  auto db = migrated(s);
  const auto id = new_order(db, 5);
  db.write([&](transaction& tx) {
    CHECK_THROWS_AS(orders().add(tx, id, "qty; DROP TABLE work_orders", 1), invalid_argument);
    CHECK_THROWS_AS(orders().add(tx, id, "version", 1), invalid_argument);
    CHECK_THROWS_AS(orders().add(tx, id, "qty", 1, {.min = 5, .max = 1}), invalid_argument);
    CHECK_THROWS_AS(orders().find_by(tx, "nope", 1), invalid_argument);
    CHECK_THROWS_AS(orders().insert(tx, {"neg", "draft", 1, std::nullopt}, -7), invalid_argument); // explicit ids are positive
  });
  CHECK_THROWS_AS(state_machine("status", {{"draft", ""}}), invalid_argument);
  CHECK_THROWS_AS(state_machine("status", {{"", "open"}}), invalid_argument);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM work_orders"); }) == 1);
  CHECK(load(db, id).version == 1);
  CHECK(load(db, id).data.qty == 5);
}

