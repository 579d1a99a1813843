// `casecore health` (tools/cli/cli.hpp): thresholds over the database-wide figures; exits
// exit_unhealthy (6) and names each threshold crossed. Deadlocks per hour need an earlier reading
// of PostgreSQL's cumulative counter: --state FILE keeps the readings of the last hour between runs.
#include "cli.hpp"

#include <casecore/health.hpp>
#include <casecore/metrics.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

namespace casecore::cli {

namespace {

// -1: not given (the options refuse negative numbers).
struct health_args {
  double pool = -1, queue = -1, ready_age = -1, stuck = -1, failed = -1, outbox = -1, outbox_age = -1, deadlocks = -1;
  std::string state;
  int window = 300;
};

std::vector<health::deadlock_sample> read_state(const std::string& path) {
  std::vector<health::deadlock_sample> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    health::deadlock_sample s;
    if (fields >> s.at >> s.deadlocks >> s.stats_reset) out.push_back(s);
  }
  return out; // a missing or garbled file is a first run
}

void write_state(const std::string& path, std::vector<health::deadlock_sample> samples, const health::deadlock_sample& now) {
  // Keep what the next run needs: the newest reading over an hour old and everything younger.
  std::erase_if(samples, [&](const auto& s) { return s.stats_reset != now.stats_reset || s.at > now.at; });
  std::sort(samples.begin(), samples.end(), [](const auto& a, const auto& b) { return a.at < b.at; });
  while (samples.size() > 1 && now.at - samples[1].at >= 3600) samples.erase(samples.begin());
  samples.push_back(now);
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out.precision(17);
    for (const auto& s : samples) out << s.at << ' ' << s.deadlocks << ' ' << s.stats_reset << '\n';
    if (!out) raise(errc::invalid_argument, "cannot write the health state file " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) raise(errc::invalid_argument, "cannot replace the health state file " + path);
}

double sample_value(const std::vector<metrics::family>& families, std::string_view name) {
  for (const auto& f : families)
    if (f.name == name && !f.samples.empty()) return f.samples.front().value;
  return -1;
}

} // namespace

void add_health(CLI::App& app, const context& ctx, action& run) {
  auto args = std::make_shared<health_args>();
  auto& opts = *args;
  auto* cmd = app.add_subcommand("health", "Check database-wide thresholds; exit 6 and name each one crossed");
  cmd->add_option("--max-pool-use", opts.pool, "PostgreSQL: client connections / usable max_connections (e.g. 0.8)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-queue", opts.queue, "Queued jobs, all operations (e.g. 100)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-oldest-ready", opts.ready_age, "Seconds the oldest due job may wait")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-stuck", opts.stuck, "Running jobs whose claim expired")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-failed", opts.failed, "Jobs failed in the window")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-outbox", opts.outbox, "Undelivered outbox messages")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-outbox-age", opts.outbox_age, "Seconds the oldest outbox message may wait")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-deadlocks-per-hour", opts.deadlocks, "PostgreSQL deadlocks in the last hour (e.g. 1)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--state", opts.state, "File keeping deadlock-counter readings between runs (for the hourly figure)");
  cmd->add_option("--window", opts.window, "Seconds of finished jobs --max-failed looks at")->check(CLI::Range(1, 7 * 24 * 3600))->capture_default_str();
  cmd->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      const auto& a = *args;
      auto db = ctx.open_db(access::read);
      metrics::sample_sink sink;
      metrics::database_wide_options o;
      o.window = std::chrono::seconds(a.window);
      metrics::collect_database_wide(sink, db, o);
      const auto figures = sink.take();

      std::optional<double> per_hour;
      if (const double deadlocks = sample_value(figures, "casecore_pg_deadlocks_total"); deadlocks >= 0) {
        const health::deadlock_sample now{
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(), deadlocks,
            sample_value(figures, "casecore_pg_stats_reset_timestamp_seconds")};
        const auto earlier = a.state.empty() ? std::vector<health::deadlock_sample>{} : read_state(a.state);
        per_hour = health::deadlocks_last_hour(earlier, now);
        if (!a.state.empty()) write_state(a.state, earlier, now);
      }
      auto given = [](double v) { return v >= 0 ? std::optional<double>(v) : std::nullopt; };
      const health::database_limits limits{given(a.pool),   given(a.queue),  given(a.ready_age),  given(a.stuck),
                                           given(a.failed), given(a.outbox), given(a.outbox_age), given(a.deadlocks)};
      std::vector<std::string> skipped;
      const auto r = health::check_figures(figures, limits, per_hour, &skipped);
      if (r.overall != health::status::ok) ctx.result = exit_unhealthy;
      if (ctx.json) {
        std::vector<std::string> findings, notes;
        for (const auto& f : r.findings)
          findings.push_back(object({{"check", quote(f.check)}, {"value", num(f.value)}, {"threshold", num(f.threshold)},
                                     {"reason", quote(f.reason)}}));
        for (const auto& s : skipped) notes.push_back(quote(s));
        std::cout << object({{"status", quote(r.overall == health::status::ok ? "ok" : "unhealthy")},
                             {"crossed", array(findings)},
                             {"skipped", array(notes)},
                             {"deadlocks_last_hour", per_hour ? num(*per_hour) : "null"}})
                  << "\n";
        return;
      }
      for (const auto& f : r.findings) std::cout << "CROSSED  " << text(f.check) << ": " << text(f.reason) << "\n";
      for (const auto& s : skipped) std::cout << "skipped  " << text(s) << "\n";
      std::cout << (r.overall == health::status::ok ? "healthy" : "unhealthy") << "\n";
    };
  });
}

} // namespace casecore::cli
