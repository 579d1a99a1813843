// bench_kit — what single-flight buys for an expensive report, and what the kit's hot paths cost.
//
// Rows: "report" runs a 2 ms "render" (sleep + a query) per call; casecore shares one render among
// concurrent callers of the same key, raw renders per caller. "cached report" adds the versioned
// cache. "db flight" is the cross-process claim path (claim + lookup + release per call) against raw
// per-call rendering. "metrics collect" renders a registry with one database vs reading
// pool_stats()+tx_stats() directly.
#include "harness.hpp"

#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/single_flight.hpp>

#include <cstdio>
#include <filesystem>
#include <thread>
#include <unistd.h>

using namespace casecore;

namespace {
int render(database& db) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return db.read([](transaction& tx) { return tx.query_one<int>("SELECT 1"); });
}

void run_backend(const std::string& name, const std::string& url) {
  auto db = casecore::open(url);
  migrate(db);
  const auto d = bench::duration();
  for (int callers : {1, 8, 32}) {
    single_flight<int, int> sf;
    const double lib = bench::measure(callers, d, [&](int) { sf.run(1, [&] { return render(db); }); return 1; });
    const double raw = bench::measure(callers, d, [&](int) { render(db); return 1; });
    bench::row("report (2 ms render, one key)", name, callers, lib, raw);
  }
  for (int callers : {1, 8, 32}) {
    versioned_cache<int, int> cache;
    std::atomic<std::int64_t> version{0};
    // The source changes every 1000 calls: mostly hits, with a shared recompute per change.
    const double lib = bench::measure(callers, d, [&](int) {
      cache.get(1, version++ / 1000, [&] { return render(db); });
      return 1;
    });
    const double raw = bench::measure(callers, d, [&](int) { render(db); return 1; });
    bench::row("cached report (version changes /1000 calls)", name, callers, lib, raw);
  }
  for (int callers : {1, 8, 32}) {
    db_single_flight<int> flight(db);
    const double lib = bench::measure(callers, d, [&](int t) {
      flight.run("k" + std::to_string(t % 4), [] { return std::optional<int>{}; }, [&] { return render(db); },
                 [](transaction&, const int&) {});
      return 1;
    });
    const double raw = bench::measure(callers, d, [&](int) { render(db); return 1; });
    bench::row("db flight (claim+release, 4 keys)", name, callers, lib, raw);
  }
  metrics::registry reg;
  reg.add_database(db, "main");
  const double lib = bench::measure(1, d, [&](int) { return reg.prometheus_text().empty() ? 0 : 1; });
  const double raw = bench::measure(1, d, [&](int) {
    auto p = db.pool_stats();
    auto t = db.tx_stats();
    return static_cast<std::uint64_t>((p.acquired + t.commits) > 0 ? 1 : 1);
  });
  bench::row("metrics collect+render", name, 1, lib, raw);
}
} // namespace

int main() {
  bench::header();
  const auto dir = std::filesystem::temp_directory_path() / ("bench_kit_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  run_backend("sqlite", "sqlite:" + (dir / "kit.db").string());
  if (const char* pg = std::getenv("CASECORE_TEST_PG_URL")) {
    // A private schema, like the test fixture, so the shared server's default schema stays clean.
    const std::string admin = pg, schema = "bench_kit_" + std::to_string(::getpid());
    casecore::open(admin).write([&](transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema); });
    run_backend("postgres", admin + (admin.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema);
    casecore::open(admin).write([&](transaction& tx) { tx.exec_script("DROP SCHEMA " + schema + " CASCADE"); });
  }
  std::filesystem::remove_all(dir);
}
