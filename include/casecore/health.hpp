// casecore/health.hpp — a health check over the thresholds operators asked for.
//
// A monitor watches registered databases (pool use, callers waiting, pool timeouts, deadlocks and
// serialization failures per hour, commits of unknown outcome) and pluggable queue gauges (e.g. the
// number of ready jobs), and turns them into a report: ok / warn / critical with one finding per
// threshold crossed. Per-hour figures come from the difference between the database's counters now
// and their values up to one hour ago (the monitor keeps samples of the last hour; a young monitor
// reports what it saw so far, never an extrapolation).
//
// check_figures() judges database-wide figures (metrics::collect_database_wide) against
// database_limits instead — what `casecore health` does, with deadlocks_last_hour() turning
// PostgreSQL's cumulative deadlock counter into a count for the last hour (docs/telemetry.md).
//
// Concurrency: all members are thread-safe. Failure modes: bad thresholds or an empty name throw
// invalid_argument; a queue gauge that throws yields a critical finding instead of an exception.
#pragma once

#include <casecore/database.hpp>
#include <casecore/metrics.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::health {

/// Overall or per-finding status, ordered by severity.
enum class status { ok = 0, warn = 1, critical = 2 };

/// "ok", "warn" or "critical".
std::string_view to_string(status s) noexcept;

/// Thresholds of the database checks (a value above warn → warn, above critical → critical).
struct thresholds {
  double pool_use_warn = 0.80;                  ///< in_use / capacity
  double pool_use_critical = 0.95;              ///< in_use / capacity
  double pool_waiting_warn = 0;                 ///< callers waiting for a connection now
  double pool_waiting_critical = 16;            ///< callers waiting for a connection now
  double pool_timeouts_per_hour_warn = 0;       ///< acquisitions that gave up, last hour
  double pool_timeouts_per_hour_critical = 10;  ///< acquisitions that gave up, last hour
  double deadlocks_per_hour_warn = 0;           ///< deadlock retries, last hour
  double deadlocks_per_hour_critical = 10;      ///< deadlock retries, last hour
  double serialization_per_hour_warn = 60;      ///< serialization-failure retries, last hour
  double serialization_per_hour_critical = 600; ///< serialization-failure retries, last hour
  double outcome_unknown_per_hour_warn = 0;     ///< commits of unknown outcome, last hour
  double outcome_unknown_per_hour_critical = 5; ///< commits of unknown outcome, last hour
};

/// One threshold crossed.
struct finding {
  status level = status::ok;  ///< warn or critical
  std::string check;          ///< e.g. "main.pool_use", "jobs.queue_length"
  double value = 0;           ///< the observed value
  double threshold = 0;       ///< the threshold it exceeded
  std::string reason;         ///< human-readable sentence
};

/// The result of one check.
struct report {
  status overall = status::ok;     ///< the worst finding, ok when none
  std::vector<finding> findings;   ///< thresholds crossed
  /// The report as one JSON object.
  std::string to_json() const;
};

/// Limits over the database-wide figures (metrics::collect_database_wide) that `casecore health`
/// checks; an unset limit is not checked. A value above its limit is a critical finding.
struct database_limits {
  std::optional<double> max_pool_use;             ///< PostgreSQL: client connections / usable max_connections
  std::optional<double> max_queue;                ///< queued jobs, all operations
  std::optional<double> max_oldest_ready_seconds; ///< age of the oldest due queued job
  std::optional<double> max_stuck;                ///< running jobs whose claim expired
  std::optional<double> max_failed_recent;        ///< jobs failed in the metrics window
  std::optional<double> max_outbox;               ///< undelivered outbox messages
  std::optional<double> max_outbox_age_seconds;   ///< age of the oldest undelivered message
  std::optional<double> max_deadlocks_per_hour;   ///< PostgreSQL deadlocks in the last hour (see deadlocks_last_hour)
};

/// One reading of PostgreSQL's cumulative deadlock counter (pg_stat_database.deadlocks).
struct deadlock_sample {
  double at = 0;          ///< unix seconds of the reading
  double deadlocks = 0;   ///< the counter
  double stats_reset = 0; ///< pg_stat_database.stats_reset (unix seconds, 0: never reset)
};

/// Deadlocks in the last hour from a counter: `now` minus the newest earlier sample that is at least
/// an hour old, else minus the oldest earlier sample (a shorter window: its count, never scaled up).
/// Samples taken before a statistics reset are ignored; with none left, a reset less than an hour
/// ago makes the counter itself the answer (it counts since the reset). Otherwise nullopt: the
/// figure needs a previous sample (`casecore health --state FILE` keeps them between runs).
std::optional<double> deadlocks_last_hour(const std::vector<deadlock_sample>& earlier, const deadlock_sample& now);

/// Check database-wide figures against `limits`. Checks that do not apply to the backend (pool use
/// and deadlocks on SQLite) or lack data are listed in `skipped` instead of passing silently.
report check_figures(const std::vector<metrics::family>& figures, const database_limits& limits,
                     std::optional<double> deadlocks_per_hour, std::vector<std::string>* skipped = nullptr);

/// Watches databases and queues and reports against thresholds.
class monitor {
public:
  /// A monitor with these thresholds (invalid_argument when a warn level exceeds its critical one).
  explicit monitor(thresholds t = {});

  /// Watch `db` under `name`.
  void add_database(database db, std::string name);
  /// Watch a queue: `length()` above `warn_above` warns, above `critical_above` is critical.
  void add_queue(std::string name, std::function<double()> length, double warn_above, double critical_above);

  /// Check now.
  report check();
  /// Check as of `now` (tests and hosts with their own clock).
  report check(std::chrono::steady_clock::time_point now);

private:
  struct counts {
    std::chrono::steady_clock::time_point at;
    std::uint64_t timeouts = 0, deadlocks = 0, serialization = 0, unknown = 0;
  };
  struct watched_db {
    database db;
    std::string name;
    std::deque<counts> history; // samples of the last hour, oldest first
  };
  struct watched_queue {
    std::string name;
    std::function<double()> length;
    double warn, critical;
  };
  void check_database(watched_db& w, std::chrono::steady_clock::time_point now, report& r);

  std::mutex mutex_;
  thresholds limits_;
  std::vector<watched_db> dbs_;
  std::vector<watched_queue> queues_;
};

} // namespace casecore::health

CASECORE_API_END
