// metrics::registry and its Prometheus text on both backends (health checks: health_test.cpp).
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {
bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

// Every sample line must belong to the family announced by the closest preceding TYPE line.
void check_grouping(const std::string& text) {
  std::istringstream in(text);
  std::string family;
  std::set<std::string> seen;
  for (std::string l; std::getline(in, l);) {
    if (l.starts_with("# HELP ")) continue;
    if (l.starts_with("# TYPE ")) {
      family = l.substr(7, l.find(' ', 7) - 7);
      CHECK_MESSAGE(seen.insert(family).second, "family announced twice: " << family);
      continue;
    }
    CHECK_MESSAGE(l.starts_with(family), "sample outside its family: " << l);
  }
}
} // namespace

TEST_CASE("metrics: instruments render as Prometheus text with escaped labels") {
  metrics::registry r;
  r.counter("app_reports_total", "Reports rendered", {{"kind", "pdf \"A4\"\\x\nnext"}}).inc(3);
  r.gauge("app_queue_length", "Jobs waiting").set(2.5);
  auto& h = r.histogram("app_render_seconds", "Render time", {}, {0.1, 1});
  h.observe(0.05);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  const auto text = r.prometheus_text();
  CHECK(has_line(text, "# HELP app_reports_total Reports rendered"));
  CHECK(has_line(text, "# TYPE app_reports_total counter"));
  CHECK(has_line(text, "app_reports_total{kind=\"pdf \\\"A4\\\"\\\\x\\nnext\"} 3"));
  CHECK(has_line(text, "# TYPE app_queue_length gauge"));
  CHECK(has_line(text, "app_queue_length 2.5"));
  CHECK(has_line(text, "# TYPE app_render_seconds histogram"));
  CHECK(has_line(text, "app_render_seconds_bucket{le=\"0.1\"} 2"));
  CHECK(has_line(text, "app_render_seconds_bucket{le=\"1\"} 3"));
  CHECK(has_line(text, "app_render_seconds_bucket{le=\"+Inf\"} 4"));
  CHECK(has_line(text, "app_render_seconds_sum 7.65"));
  CHECK(has_line(text, "app_render_seconds_count 4"));
  check_grouping(text);
}

TEST_CASE("metrics: same name and labels give the same instrument; bad registrations are typed errors") {
  metrics::registry r;
  auto& a = r.counter("x_total", "X", {{"k", "1"}});
  auto& b = r.counter("x_total", "X", {{"k", "1"}});
  auto& c = r.counter("x_total", "X", {{"k", "2"}});
  CHECK(&a == &b);
  CHECK(&a != &c);
  CHECK_THROWS_AS(r.gauge("x_total", "X"), invalid_argument);
  CHECK_THROWS_AS(r.counter("x_total", "other help"), invalid_argument);
  CHECK_THROWS_AS(r.counter("1bad", "h"), invalid_argument);
  CHECK_THROWS_AS(r.counter("ok_total", "h", {{"__reserved", "v"}}), invalid_argument);
  CHECK_THROWS_AS(r.counter("ok_total", "h", {{"le", "v"}}), invalid_argument);
  CHECK_THROWS_AS(r.counter("ok_total", "h", {{"a", "1"}, {"a", "2"}}), invalid_argument);
  CHECK_THROWS_AS(r.histogram("h_seconds", "h", {}, {1, 0.5}), invalid_argument);
  CHECK_THROWS_AS(r.add_collector({}), invalid_argument);
}

TEST_CASE("metrics: concurrent increments are all counted") {
  metrics::registry r;
  casecore::testing::race(16, [&](std::size_t) {
    auto& c = r.counter("hits_total", "Hits");
    auto& h = r.histogram("lat_seconds", "Latency", {}, {1});
    for (int i = 0; i < 1000; ++i) {
      c.inc();
      h.observe(0.5);
    }
  });
  const auto text = r.prometheus_text();
  CHECK(has_line(text, "hits_total 16000"));
  CHECK(has_line(text, "lat_seconds_count 16000"));
}

TEST_CASE("metrics: database pool and transaction figures, collectors, visit and failing collectors") {
  scratch_database s;
  auto db = s.open_migrated();
  for (int i = 0; i < 3; ++i) db.write([](transaction& tx) { outbox::publish(tx, "t", "p"); });
  CHECK_THROWS(db.write([](transaction&) { throw std::runtime_error("rolled back"); }));
  metrics::registry r;
  r.add_database(db, "main");
  r.add_collector([&](metrics::sample_sink& sink) {
    sink.gauge("casecore_outbox_pending", "Outbox messages not yet delivered", {{"topic", "t"}},
               static_cast<double>(outbox::pending(db, "t")));
  });
  const auto broken = r.add_collector([](metrics::sample_sink&) { throw std::runtime_error("collector down"); });
  const auto text = r.prometheus_text();
  check_grouping(text);
  CHECK(has_line(text, "# TYPE casecore_pool_in_use gauge"));
  CHECK(has_line(text, "casecore_pool_in_use{db=\"main\"} 0"));
  CHECK(text.find("casecore_tx_commits_total{db=\"main\"} ") != std::string::npos);
  CHECK(has_line(text, "casecore_tx_retries_total{db=\"main\",cause=\"deadlock\"} 0"));
  CHECK(text.find("casecore_pool_acquire_wait_seconds_bucket{db=\"main\",le=\"+Inf\"} ") != std::string::npos);
  CHECK(text.find("casecore_pool_acquire_wait_seconds_count{db=\"main\"} ") != std::string::npos);
  CHECK(has_line(text, "casecore_outbox_pending{topic=\"t\"} 3"));
  CHECK(has_line(text, "casecore_collector_failures_total 1"));
  r.remove_collector(broken);

  std::map<std::string, metrics::metric_type> types;
  r.visit([&](const metrics::family& f) { types[f.name] = f.type; });
  CHECK(types.at("casecore_tx_commits_total") == metrics::metric_type::counter);
  CHECK(types.at("casecore_pool_acquire_wait_seconds") == metrics::metric_type::histogram);
  double commits = 0;
  for (const auto& f : r.collect())
    if (f.name == "casecore_tx_commits_total") commits = f.samples.at(0).value;
  CHECK(commits >= 4); // migrate + 3 publishes
  CHECK(has_line(r.prometheus_text(), "casecore_collector_failures_total 1"));
}

TEST_CASE("metrics: metric and label names follow Prometheus' grammar exactly; bounds must be finite") {
  metrics::registry r;
  for (const std::string& bad : {std::string(), std::string(201, 'm'), std::string("a-b"), std::string("a b"), std::string("9lives")})
    CHECK_THROWS_AS(r.counter(bad, "h"), invalid_argument);
  CHECK_NOTHROW(r.counter(std::string(200, 'm'), "h"));
  CHECK_NOTHROW(r.counter("ns:sub_x9_total", "h")); // ':' and digits after the first character
  for (const std::string& bad : {std::string(), std::string(101, 'l'), std::string("a-b"), std::string("9a"), std::string("a:b")})
    CHECK_THROWS_AS(r.counter("y_total", "h", {{bad, "v"}}), invalid_argument);
  CHECK_NOTHROW(r.counter("y_total", "h", {{"_l9", "v"}}));
  CHECK_THROWS_AS(r.histogram("h_seconds", "h", {}, {0.5, INFINITY}), invalid_argument);
  CHECK_THROWS_AS(r.histogram("h_seconds", "h", {}, {NAN}), invalid_argument);
  scratch_database s;
  CHECK_THROWS_AS(r.add_database(s.open(), ""), invalid_argument);
  const auto text = r.prometheus_text();
  CHECK(text.find("h_seconds") == std::string::npos); // refused registrations left no family behind
  CHECK(text.find("a-b") == std::string::npos);
}

TEST_CASE("metrics: a histogram without bounds gets the default seconds buckets; NaN and infinities render by name") {
  metrics::registry r;
  r.histogram("op_seconds", "Op time").observe(0.003);
  r.gauge("g_nan", "h").set(NAN);
  r.gauge("g_neg", "h").set(-INFINITY);
  r.gauge("g_pos", "h").set(INFINITY);
  const auto text = r.prometheus_text();
  for (const auto* le : {"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"})
    CHECK_MESSAGE(text.find(std::string("op_seconds_bucket{le=\"") + le + "\"}") != std::string::npos, le);
  CHECK(has_line(text, "op_seconds_bucket{le=\"0.001\"} 0"));
  CHECK(has_line(text, "op_seconds_bucket{le=\"0.005\"} 1"));
  CHECK(has_line(text, "g_nan NaN"));
  CHECK(has_line(text, "g_neg -Inf"));
  CHECK(has_line(text, "g_pos +Inf"));
  check_grouping(text);
}

TEST_CASE("metrics: a collector's sink refuses a bad name, a second type for a name, and mismatched histogram counts") {
  metrics::sample_sink sink;
  sink.counter("jobs_total", "h", {}, 1);
  CHECK_THROWS_AS(sink.gauge("jobs_total", "h", {}, 1), invalid_argument);
  CHECK_THROWS_AS(sink.counter("bad name", "h", {}, 1), invalid_argument);
  CHECK_THROWS_AS(sink.histogram("lat_seconds", "h", {}, {0.1, 1}, {1, 2}, 0.3), invalid_argument); // needs 3 counts
  sink.histogram("lat_seconds", "h", {}, {0.1, 1}, {1, 2, 3}, 9.5);
  const auto fams = sink.take();
  REQUIRE(fams.size() == 2);
  CHECK(fams[0].samples.size() == 1);
  const auto text = metrics::to_prometheus(fams);
  CHECK(has_line(text, "lat_seconds_bucket{le=\"0.1\"} 1"));
  CHECK(has_line(text, "lat_seconds_bucket{le=\"1\"} 3"));
  CHECK(has_line(text, "lat_seconds_bucket{le=\"+Inf\"} 6"));
  CHECK(has_line(text, "lat_seconds_count 6"));
}


namespace {
// The series of casecore_transaction_duration_seconds{db="main",mode=...}: le -> cumulative count,
// plus _sum and _count; checks the exposition rules on the way (cumulative, +Inf == _count).
struct duration_series {
  std::vector<std::pair<std::string, double>> buckets;
  double sum = -1, count = -1;
};
duration_series duration_of(const std::string& text, const std::string& mode) {
  duration_series d;
  const std::string labels = "{db=\"main\",mode=\"" + mode + "\"";
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.starts_with("casecore_transaction_duration_seconds_")) continue;
    const auto space = l.rfind(' ');
    REQUIRE(space != std::string::npos);
    const double v = std::stod(l.substr(space + 1));
    if (l.starts_with("casecore_transaction_duration_seconds_bucket" + labels + ",le=\"")) {
      const auto from = l.find(",le=\"") + 5;
      d.buckets.emplace_back(l.substr(from, l.find('"', from) - from), v);
    } else if (l.starts_with("casecore_transaction_duration_seconds_sum" + labels + "}")) {
      d.sum = v;
    } else if (l.starts_with("casecore_transaction_duration_seconds_count" + labels + "}")) {
      d.count = v;
    }
  }
  return d;
}
double bucket(const duration_series& d, const std::string& le) {
  for (const auto& [b, v] : d.buckets)
    if (b == le) return v;
  FAIL("no bucket le=" << le);
  return -1;
}
} // namespace

TEST_CASE("metrics: casecore_transaction_duration_seconds counts every unit of work by mode, valid histogram text") {
  scratch_database s;
  auto db = s.open_migrated();
  metrics::registry r;
  r.add_database(db, "main");
  const auto before_text = r.prometheus_text();
  const auto w0 = duration_of(before_text, "write"), r0 = duration_of(before_text, "read");
  REQUIRE(w0.count >= 0);
  REQUIRE(r0.count >= 0);

  for (int i = 0; i < 5; ++i) db.write([](transaction& tx) { outbox::publish(tx, "t", "p"); });
  CHECK_THROWS(db.write([](transaction&) { throw std::runtime_error("rolled back"); })); // counted too
  for (int i = 0; i < 3; ++i) db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT 1"); });
  // A unit that takes at least 30 ms cannot land in a bucket of 25 ms or less.
  const auto mid = duration_of(r.prometheus_text(), "write");
  db.write([](transaction&) { std::this_thread::sleep_for(std::chrono::milliseconds(30)); });

  const auto text = r.prometheus_text();
  check_grouping(text);
  CHECK(has_line(text, "# TYPE casecore_transaction_duration_seconds histogram"));
  const auto w = duration_of(text, "write"), rd = duration_of(text, "read");
  CHECK(w.count == w0.count + 7);
  CHECK(rd.count == r0.count + 3);
  CHECK(w.sum >= mid.sum + 0.030);
  CHECK(w.count == mid.count + 1);
  CHECK(bucket(w, "0.025") == bucket(mid, "0.025")); // the 30 ms unit is above it
  CHECK(bucket(w, "+Inf") == bucket(mid, "+Inf") + 1);
  CHECK(bucket(w, "+Inf") == w.count);
  CHECK(bucket(rd, "+Inf") == rd.count);
  // Consistent le labels for both modes, increasing bounds, cumulative counts.
  REQUIRE(w.buckets.size() == rd.buckets.size());
  REQUIRE(w.buckets.size() == 13);
  for (std::size_t i = 0; i < w.buckets.size(); ++i) {
    CHECK(w.buckets[i].first == rd.buckets[i].first);
    if (i > 0) {
      CHECK(w.buckets[i].second >= w.buckets[i - 1].second);
      CHECK(rd.buckets[i].second >= rd.buckets[i - 1].second);
      if (i + 1 < w.buckets.size()) CHECK(std::stod(w.buckets[i].first) > std::stod(w.buckets[i - 1].first));
    }
  }
  CHECK(w.buckets.front().first == "0.001");
  CHECK(w.buckets.back().first == "+Inf");
  CHECK(has_line(text, "casecore_tx_retries_total{db=\"main\",cause=\"reconnect\"} 0"));
}
