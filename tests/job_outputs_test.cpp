// Stage outputs: a stage records bytes or JSON text with its completion; later stages and operators
// read it; a failed, lost or refused output is never stored; bounds and JSON checks refuse bad input
// and write nothing. Both backends.
#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <functional>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;
using namespace std::string_view_literals;
using casecore::testing::scratch_database;

namespace {

jobs::job_spec spec(std::string subject, std::vector<std::string> stages, int max_attempts = 1) {
  jobs::job_spec s;
  s.operation = "ocr";
  s.subject = std::move(subject);
  s.stages = std::move(stages);
  s.max_attempts = max_attempts;
  return s;
}

jobs::worker_options options(std::string owner = "w1", std::chrono::milliseconds lease = 30s) {
  jobs::worker_options o;
  o.owner = std::move(owner);
  o.threads = 1;
  o.lease = lease;
  return o;
}

std::int64_t scalar(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

jobs::job_state state_of(database& db, std::int64_t id) {
  const auto j = jobs::get(db, id);
  REQUIRE(j);
  return j->state;
}

// Bytes no text API would carry: a NUL, invalid UTF-8, markup and a terminal escape.
const std::string binary{"\x00\xff\xfe<b>\x1b[2J\x00" "end"sv};

} // namespace

TEST_CASE("outputs: a stage's output is read by the next stages and by operators") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("doc:1", {"extract", "index", "publish"})).id;

  jobs::worker w(db, options());
  std::optional<jobs::stage_output> seen_by_index, seen_by_publish, own_before;
  w.on_stage("extract", [&](jobs::job_context& ctx) {
    own_before = ctx.output("extract"); // nothing recorded yet
    ctx.set_output("first try");
    ctx.set_output(binary); // replaces the pending one
  });
  w.on_stage("index", [&](jobs::job_context& ctx) {
    seen_by_index = ctx.output("extract");
    CHECK_FALSE(ctx.output("publish"));
    CHECK_THROWS_AS(ctx.output("no-such-stage"), invalid_argument);
    // Set inside complete(): still written in that same transaction.
    ctx.complete([&](transaction&) { ctx.set_output_json(R"({"pages": 12, "lang": "fr", "title": "Été"})"); });
    CHECK_THROWS_AS(ctx.set_output("too late"), invalid_argument); // the stage already completed
  });
  w.on_stage("publish", [&](jobs::job_context& ctx) {
    seen_by_publish = ctx.output("index");
    ctx.set_output_json("[1, 2, 3]"); // the last stage, returning without complete()
  });
  CHECK(w.run_once() == 1);
  CHECK(state_of(db, id) == jobs::job_state::succeeded);

  CHECK_FALSE(own_before);
  REQUIRE(seen_by_index);
  CHECK(seen_by_index->kind == jobs::output_kind::bytes);
  CHECK(seen_by_index->data == binary);
  REQUIRE(seen_by_publish);
  CHECK(seen_by_publish->kind == jobs::output_kind::json);
  CHECK(seen_by_publish->data == R"({"pages": 12, "lang": "fr", "title": "Été"})");

  const auto j = jobs::get(db, id);
  const auto all = jobs::outputs(db, id);
  REQUIRE(all.size() == 3);
  CHECK(all[0].stage == "extract");
  CHECK(all[0].position == 0);
  CHECK(all[0].data == binary);
  CHECK(all[1].stage == "index");
  CHECK(all[1].kind == jobs::output_kind::json);
  CHECK(all[2].stage == "publish");
  CHECK(all[2].data == "[1, 2, 3]");
  for (const auto& o : all) {
    CHECK(o.lease_epoch == j->lease_epoch); // written by this claim
    CHECK(o.written_at >= j->created_at);
  }
  const auto one = jobs::output(db, id, "index");
  REQUIRE(one);
  CHECK(one->data == all[1].data);
  CHECK_FALSE(jobs::output(db, id, "nope"));
  CHECK(jobs::outputs(db, id + 1000).empty());

  // Outputs go with their job when it is pruned.
  CHECK(jobs::prune(db, 0ms) == 1);
  CHECK(jobs::outputs(db, id).empty());
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_outputs") == 0);
}

TEST_CASE("outputs: last stages of a batch with outputs are each stored") {
  scratch_database s;
  auto db = s.open_migrated();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(jobs::enqueue(db, spec("doc:" + std::to_string(i), {"only"})).id);
  auto o = options();
  o.batch = 3;
  jobs::worker w(db, o);
  w.on_stage("only", [](jobs::job_context& ctx) { ctx.set_output("out:" + ctx.current().subject); });
  CHECK(w.run_once() == 3);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(state_of(db, ids[i]) == jobs::job_state::succeeded);
    const auto out = jobs::output(db, ids[i], "only");
    REQUIRE(out);
    CHECK(out->data == "out:doc:" + std::to_string(i));
  }
}

TEST_CASE("outputs: a handler that fails leaves no output; the retried stage's output is stored when it completes") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("doc:2", {"extract", "index"})).id;
  jobs::worker w(db, options());
  int runs = 0;
  w.on_stage("extract", [&](jobs::job_context& ctx) {
    ++runs;
    if (runs == 1) {
      ctx.set_output("from the failed run");
      throw std::runtime_error("OCR engine crashed");
    }
    ctx.set_output("from the run that completed");
  });
  w.on_stage("index", [](jobs::job_context&) {});
  CHECK(w.run_once() == 1);
  CHECK(state_of(db, id) == jobs::job_state::failed);
  CHECK(jobs::outputs(db, id).empty());

  jobs::retry(db, id);
  CHECK(w.run_once() == 1);
  CHECK(state_of(db, id) == jobs::job_state::succeeded);
  const auto all = jobs::outputs(db, id);
  REQUIRE(all.size() == 1);
  CHECK(all[0].data == "from the run that completed");
}

TEST_CASE("outputs: a handler that snoozes leaves no output and can set none after the snooze") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("doc:9", {"extract"})).id;
  jobs::worker w(db, options());
  bool refused = false;
  w.on_stage("extract", [&](jobs::job_context& ctx) {
    ctx.set_output("not yet");
    ctx.snooze(1h);
    try {
      ctx.set_output("after the snooze");
    } catch (const invalid_argument&) {
      refused = true;
    }
  });
  CHECK(w.run_once() == 1);
  CHECK(refused);
  CHECK(state_of(db, id) == jobs::job_state::queued);
  CHECK(jobs::outputs(db, id).empty());
}

TEST_CASE("outputs: a handler whose claim was lost before its completion leaves no output") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto lease = 300ms;

  SUBCASE("the claim expired and another worker took the job") {
    const auto id = jobs::enqueue(db, spec("doc:3", {"extract"}, 3)).id;
    jobs::worker w(db, options("w1", lease));
    std::optional<jobs::claim_ref> taken;
    bool refused = false;
    w.on_stage("extract", [&](jobs::job_context& ctx) {
      ctx.set_output("stale");
      // Wait out the lease, then let the queue requeue it and w2 claim it (a new token).
      for (int i = 0; i < 500 && jobs::reclaim_expired(db) == 0; ++i) std::this_thread::sleep_for(10ms);
      auto got = jobs::claim(db, {.owner = "w2", .batch = 1, .lease = 30s});
      REQUIRE(got.size() == 1);
      taken = jobs::claim_ref{got[0].id, got[0].lease_epoch};
      try {
        ctx.complete([](transaction&) {});
      } catch (const lease_lost&) {
        refused = true;
      }
    });
    CHECK(w.run_once() == 1);
    CHECK(refused);
    CHECK(jobs::outputs(db, id).empty());
    REQUIRE(taken);
    CHECK(w.stats().lost == 1);
    // The new claimant's output is the one stored.
    db.write([&](transaction& tx) { jobs::complete_stage(tx, *taken, 0, tx.now_us()); });
    CHECK(state_of(db, id) == jobs::job_state::succeeded);
    CHECK(jobs::outputs(db, id).empty());
  }

  SUBCASE("the claim expired (nobody took it) and the handler returned") {
    const auto id = jobs::enqueue(db, spec("doc:4", {"extract", "index"}, 3)).id;
    jobs::worker w(db, options("w1", lease));
    bool index_ran = false;
    w.on_stage("extract", [&](jobs::job_context& ctx) {
      ctx.set_output_json(R"({"stale": true})");
      // Past the expiry on the database clock: the completion the worker makes is refused.
      for (int i = 0; i < 500; ++i) {
        if (scalar(db, "SELECT count(*) FROM casecore_jobs WHERE id = " + std::to_string(ctx.current().id) +
                           " AND lease_expires_at < casecore_now_us()") == 1)
          break;
        std::this_thread::sleep_for(10ms);
      }
    });
    w.on_stage("index", [&](jobs::job_context&) { index_ran = true; });
    CHECK(w.run_once() == 1);
    CHECK_FALSE(index_ran);
    CHECK(w.stats().lost == 1);
    CHECK(jobs::outputs(db, id).empty());
    const auto j = jobs::get(db, id);
    CHECK(j->current_stage == 0);
  }
}

TEST_CASE("outputs: an output over the bound is refused and nothing of it is written") {
  scratch_database s;
  auto db = s.open_migrated();
  auto o = options();
  o.max_output = 16;
  const auto keep = jobs::enqueue(db, spec("doc:5", {"extract"})).id;
  const auto none = jobs::enqueue(db, spec("doc:6", {"extract"})).id;
  const auto escapes = jobs::enqueue(db, spec("doc:7", {"extract"})).id;
  jobs::worker w(db, o);
  w.on_stage("extract", [&](jobs::job_context& ctx) {
    const auto id = ctx.current().id;
    if (id == keep) ctx.set_output(std::string(16, 'k')); // exactly the bound
    if (id == escapes) ctx.set_output(std::string(17, 'x')); // refused, and the handler lets it escape
    CHECK_THROWS_AS(ctx.set_output(std::string(17, 'x')), invalid_argument);
    CHECK_THROWS_AS(ctx.set_output_json("\"" + std::string(15, 'j') + "\""), invalid_argument);
    CHECK_THROWS_AS(ctx.set_output(""), invalid_argument);
  });
  CHECK(w.run_once() == 1);
  CHECK(w.run_once() == 1);
  CHECK(w.run_once() == 1);
  CHECK(state_of(db, keep) == jobs::job_state::succeeded);
  CHECK(state_of(db, none) == jobs::job_state::succeeded);
  CHECK(state_of(db, escapes) == jobs::job_state::failed);
  const auto kept = jobs::outputs(db, keep);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].data == std::string(16, 'k')); // the refused call replaced nothing
  CHECK(jobs::outputs(db, none).empty());
  CHECK(jobs::outputs(db, escapes).empty());
  CHECK(scalar(db, "SELECT count(*) FROM casecore_job_outputs") == 1);

  auto bad = options();
  bad.max_output = 0;
  CHECK_THROWS_AS(jobs::worker(db, bad), invalid_argument);
  bad.max_output = jobs::max_output_limit + 1;
  CHECK_THROWS_AS(jobs::worker(db, bad), invalid_argument);
}

TEST_CASE("outputs: JSON text that is not valid UTF-8 or not JSON is refused and nothing is written") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto id = jobs::enqueue(db, spec("doc:8", {"extract"})).id;
  jobs::worker w(db, options());
  std::vector<std::string> accepted;
  w.on_stage("extract", [&](jobs::job_context& ctx) {
    const std::vector<std::string> bad{
        "\"\xff\"",                 // invalid UTF-8 inside a string
        "{\"a\": \"\xc3\x28\"}",    // a broken two-byte sequence
        "\"\xed\xa0\x80\"",         // an encoded surrogate
        std::string("{\"a\": 1}\0{\"b\""sv), // a NUL would cut the text short on its way to PostgreSQL
        "{\"a\": \"tab\tinside\"}", // a raw control character in a string
        "{not json",
        "{\"a\": 1} trailing",
        "[1, 2,]",
        "'single'",
        "",
    };
    for (const auto& text : bad) {
      CAPTURE(text);
      CHECK_THROWS_AS(ctx.set_output_json(text), invalid_argument);
    }
    for (const std::string text : {"{\"a\": 1}", " [true, null, 1.5e3] ", "\"\\u00e9t\\u00e9 \xc3\xa9\"", "42"}) {
      ctx.set_output_json(text);
      accepted.push_back(text);
    }
  });
  CHECK(w.run_once() == 1);
  CHECK(accepted.size() == 4);
  const auto all = jobs::outputs(db, id);
  REQUIRE(all.size() == 1);
  CHECK(all[0].kind == jobs::output_kind::json);
  CHECK(all[0].data == "42"); // the last accepted one

  // The column itself refuses JSON its database cannot parse, whatever path writes it.
  CHECK_THROWS(db.write([&](transaction& tx) {
    const std::string cast = tx.dialect() == dialect::postgresql ? "CAST($2 AS json)" : "$2";
    tx.exec("INSERT INTO casecore_job_outputs(job_id, position, stage, kind, data_json, lease_epoch, written_at) "
            "VALUES($1, 5, 'x', 'json', " + cast + ", 0, 0)",
            id, std::string("{broken"));
  }));
  CHECK(jobs::outputs(db, id).size() == 1);
  if (db.dialect() == dialect::postgresql) // the column's type parses every value stored in it
    CHECK(db.read([](transaction& tx) {
      return tx.query_one<std::string>("SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'casecore_job_outputs' "
                                       "AND column_name = 'data_json'");
    }) == "json");
}

TEST_CASE("outputs: check_output bounds and text rules") {
  CHECK_NOTHROW(jobs::check_output(jobs::output_kind::bytes, std::string(8, '\0'), 8));
  CHECK_THROWS_AS(jobs::check_output(jobs::output_kind::bytes, std::string(9, 'a'), 8), invalid_argument);
  CHECK_THROWS_AS(jobs::check_output(jobs::output_kind::bytes, "", 8), invalid_argument);
  CHECK_NOTHROW(jobs::check_output(jobs::output_kind::json, "{\n\t\"a\": 1\r\n}", 100));
  CHECK_THROWS_AS(jobs::check_output(jobs::output_kind::json, "\"\x01\"", 100), invalid_argument);
  CHECK_THROWS_AS(jobs::check_output(jobs::output_kind::json, "\"\xc0\xaf\"", 100), invalid_argument); // overlong
  CHECK(jobs::to_string(jobs::output_kind::json) == "json");
  CHECK(jobs::to_string(jobs::output_kind::bytes) == "bytes");
}
