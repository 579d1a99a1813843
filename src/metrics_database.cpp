// Database-wide metrics (metrics.hpp: collect_database_wide, database_prometheus_text). Every figure
// is read through an index whose rows are the live or recent ones, so a scrape costs in proportion
// to the backlog and the window, never to the whole job history (docs/telemetry.md: the cost table).
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/version.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace casecore {

namespace detail {
// Stage rows are written once a stage attempt ends (finished_at is always set), so an index on
// finished_at gives the recent stages without reading the history. Its own component: the jobs'
// versions belong to the job queue. IF NOT EXISTS: an operator may build it CONCURRENTLY beforehand.
std::vector<migration> telemetry_migrations() {
  return {
      {"casecore.telemetry", 1, "index on stage finish time for the duration metrics",
       "CREATE INDEX IF NOT EXISTS casecore_job_stages_finished ON casecore_job_stages(finished_at)", "", ""},
  };
}
} // namespace detail

namespace metrics {

namespace {

using i64 = std::int64_t;
constexpr double us = 1e6;

std::string backend_name(const database& db) { return db.dialect() == dialect::postgresql ? "postgresql" : "sqlite"; }

// "SELECT ... sum(CASE WHEN d <= b THEN 1 ELSE 0 END) ..." for each bound (microseconds; bounds
// are casecore's own numbers, never host text, and go in as integers).
std::string bucket_columns(const std::vector<double>& bounds) {
  std::string out;
  for (double b : bounds)
    out += ", CAST(coalesce(sum(CASE WHEN d <= " + std::to_string(static_cast<i64>(b * us)) + " THEN 1 ELSE 0 END), 0) AS BIGINT)";
  return out;
}

// Cumulative counts from SQL → per-bucket counts (+Inf last) for sample_sink::histogram.
std::vector<std::uint64_t> per_bucket(const std::vector<i64>& cumulative, i64 total) {
  std::vector<std::uint64_t> out;
  i64 prev = 0;
  for (auto c : cumulative) {
    out.push_back(static_cast<std::uint64_t>(std::max<i64>(c - prev, 0)));
    prev = std::max(prev, c);
  }
  out.push_back(static_cast<std::uint64_t>(std::max<i64>(total - prev, 0)));
  return out;
}

} // namespace

void collect_build_info(sample_sink& sink, const database& db) {
  sink.gauge("casecore_build_info", "casecore library version and backend (always 1)",
             {{"version", CASECORE_VERSION}, {"backend", backend_name(db)}}, 1);
}

void collect_database_wide(sample_sink& sink, database db, const database_wide_options& o) {
  if (o.window.count() <= 0) raise(errc::invalid_argument, "metrics window must be positive");
  const auto& bounds = o.duration_buckets;
  for (std::size_t i = 0; i < bounds.size(); ++i)
    if (!(bounds[i] > 0) || (i && !(bounds[i] > bounds[i - 1])))
      raise(errc::invalid_argument, "duration buckets must be positive and strictly increasing");
  const bool pg = db.dialect() == dialect::postgresql;

  db.read([&](transaction& tx) {
    std::map<std::string, int> schema;
    if (tx.query_one<bool>(tx.sql().table_exists, "casecore_migrations"))
      for (auto r : tx.exec("SELECT component, max(version) FROM casecore_migrations GROUP BY component ORDER BY component"))
        schema[r.get<std::string>(0)] = r.get<int>(1);
    for (const auto& [component, version] : schema)
      sink.gauge("casecore_schema_version", "Applied schema version per component", {{"component", component}}, version);

    // The database clock (casecore 1 creates it; every table below comes with later migrations).
    const i64 now = schema.contains("casecore") ? tx.query_one<i64>("SELECT casecore_now_us()") : 0;
    const i64 since = now - static_cast<i64>(o.window.count()) * 1000000;
    const double window = static_cast<double>(o.window.count());

    if (schema.contains("casecore.jobs")) {
      // Live jobs: one statement per state, each the predicate of a partial index
      // (casecore_jobs_ready, _scheduled, _running_job, _paused, _held): rows read = jobs in that state.
      const char* help_jobs = "Jobs now, by operation and live state (queued, scheduled, running, paused, waiting, blocked)";
      for (auto r : tx.exec("SELECT operation, count(*), min(run_at), "
                            "CAST(coalesce(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) "
                            "FROM casecore_jobs WHERE state = 'queued' GROUP BY operation ORDER BY operation")) {
        const auto op = r.get<std::string>(0);
        sink.gauge("casecore_jobs", help_jobs, {{"operation", op}, {"state", "queued"}}, static_cast<double>(r.get<i64>(1)));
        sink.gauge("casecore_jobs_oldest_ready_age_seconds", "Age of the oldest due queued job (now - run_at, 0 when none is due)",
                   {{"operation", op}}, static_cast<double>(std::max<i64>(now - r.get<i64>(2), 0)) / us);
        sink.gauge("casecore_jobs_retry_waiting", "Queued jobs that already failed at least one attempt",
                   {{"operation", op}}, static_cast<double>(r.get<i64>(3)));
      }
      for (const char* state : {"scheduled", "paused", "waiting", "blocked"})
        for (auto r : tx.exec(std::string("SELECT operation, count(*) FROM casecore_jobs WHERE state = '") + state +
                              "' GROUP BY operation ORDER BY operation"))
          sink.gauge("casecore_jobs", help_jobs, {{"operation", r.get<std::string>(0)}, {"state", state}}, static_cast<double>(r.get<i64>(1)));
      for (auto r : tx.exec("SELECT operation, count(*), "
                            "CAST(coalesce(sum(CASE WHEN lease_expires_at < $1 THEN 1 ELSE 0 END), 0) AS BIGINT) "
                            "FROM casecore_jobs WHERE state = 'running' GROUP BY operation ORDER BY operation", now)) {
        const auto op = r.get<std::string>(0);
        sink.gauge("casecore_jobs", help_jobs, {{"operation", op}, {"state", "running"}}, static_cast<double>(r.get<i64>(1)));
        sink.gauge("casecore_jobs_stuck", "Running jobs whose claim expired (not reclaimed yet)", {{"operation", op}},
                   static_cast<double>(r.get<i64>(2)));
      }

      sink.gauge("casecore_metrics_window_seconds", "Trailing window of the casecore_*_recent_* figures", {}, window);
      // Finished jobs of the window, through casecore_jobs_finished (finished_at, partial on the
      // finished states): rows read = jobs finished in the window. d is NULL for a job cancelled
      // before it ever started (counted as finished, not in the duration histogram).
      const auto jobs_sql =
          "SELECT operation, state, count(*), CAST(coalesce(sum(attempts), 0) AS BIGINT), count(d), "
          "CAST(coalesce(sum(d), 0) AS BIGINT)" + bucket_columns(bounds) +
          " FROM (SELECT operation, state, attempts, CASE WHEN started_at > 0 THEN finished_at - started_at END AS d "
          "FROM casecore_jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at >= $1) w "
          "GROUP BY operation, state ORDER BY operation, state";
      for (auto r : tx.exec(jobs_sql, since)) {
        const labels l{{"operation", r.get<std::string>(0)}, {"state", r.get<std::string>(1)}};
        sink.gauge("casecore_jobs_recent_finished", "Jobs that finished in the window, by operation and final state", l,
                   static_cast<double>(r.get<i64>(2)));
        sink.gauge("casecore_jobs_recent_attempts", "Attempts spent by the jobs that finished in the window", l,
                   static_cast<double>(r.get<i64>(3)));
        std::vector<i64> cumulative;
        for (std::size_t i = 0; i < bounds.size(); ++i) cumulative.push_back(r.get<i64>(static_cast<int>(6 + i)));
        sink.histogram("casecore_job_recent_duration_seconds",
                       "Run time (first start to finish) of the jobs that finished in the window", l, bounds,
                       per_bucket(cumulative, r.get<i64>(4)), static_cast<double>(r.get<i64>(5)) / us);
      }
      // Stage attempts that ended in the window, through casecore_job_stages_finished (added by
      // casecore.telemetry 1; without it this part is skipped rather than reading every stage).
      if (schema.contains("casecore.telemetry")) {
        const auto stages_sql =
            "SELECT operation, stage, state, count(d), CAST(coalesce(sum(d), 0) AS BIGINT)" + bucket_columns(bounds) +
            " FROM (SELECT j.operation, s.stage, s.state, s.finished_at - s.started_at AS d FROM casecore_job_stages s "
            "JOIN casecore_jobs j ON j.id = s.job_id WHERE s.finished_at >= $1) w "
            "GROUP BY operation, stage, state ORDER BY operation, stage, state";
        for (auto r : tx.exec(stages_sql, since)) {
          const labels l{{"operation", r.get<std::string>(0)}, {"stage", r.get<std::string>(1)}, {"state", r.get<std::string>(2)}};
          std::vector<i64> cumulative;
          for (std::size_t i = 0; i < bounds.size(); ++i) cumulative.push_back(r.get<i64>(static_cast<int>(5 + i)));
          sink.histogram("casecore_stage_recent_duration_seconds",
                         "Duration of the stage attempts that ended in the window (latest attempt per job and stage)", l,
                         bounds, per_bucket(cumulative, r.get<i64>(3)), static_cast<double>(r.get<i64>(4)) / us);
        }
      }
    }

    if (schema.contains("casecore")) {
      // Delivered messages are deleted: the table is the backlog (rows read = backlog).
      for (auto r : tx.exec("SELECT topic, count(*), min(created_at), "
                            "CAST(coalesce(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) "
                            "FROM casecore_outbox GROUP BY topic ORDER BY topic")) {
        const labels l{{"topic", r.get<std::string>(0)}};
        sink.gauge("casecore_outbox_messages", "Outbox messages not delivered yet", l, static_cast<double>(r.get<i64>(1)));
        sink.gauge("casecore_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox message", l,
                   static_cast<double>(std::max<i64>(now - r.get<i64>(2), 0)) / us);
        sink.gauge("casecore_outbox_retrying", "Undelivered outbox messages with at least one failed delivery", l,
                   static_cast<double>(r.get<i64>(3)));
      }
    }

    if (schema.contains("casecore.lease")) {
      const auto held = tx.query_one<i64>("SELECT count(*) FROM casecore_leases WHERE expires_at > $1", now);
      const auto all = tx.query_one<i64>("SELECT count(*) FROM casecore_leases");
      sink.gauge("casecore_leases", "Lease rows by state (held: not expired)", {{"state", "held"}}, static_cast<double>(held));
      sink.gauge("casecore_leases", "Lease rows by state (held: not expired)", {{"state", "expired"}}, static_cast<double>(all - held));
      for (auto r : tx.exec("SELECT name, owner, token, expires_at FROM casecore_leases ORDER BY name LIMIT $1",
                            static_cast<i64>(o.max_leases))) {
        const auto name = r.get<std::string>(0);
        sink.gauge("casecore_lease_expires_in_seconds", "Seconds until the lease expires (negative: expired), by holder",
                   {{"lease", name}, {"owner", r.get<std::string>(1)}}, static_cast<double>(r.get<i64>(3) - now) / us);
        sink.gauge("casecore_lease_token", "Fencing token of the lease's current grant", {{"lease", name}},
                   static_cast<double>(r.get<i64>(2)));
      }
    }

    if (pg) {
      // Server-wide figures from the statistics views (no table is read).
      for (auto r : tx.exec("SELECT deadlocks, coalesce(extract(epoch FROM stats_reset), 0)::float8 "
                            "FROM pg_stat_database WHERE datname = current_database()")) {
        sink.counter("casecore_pg_deadlocks_total", "Deadlocks PostgreSQL detected in this database since stats_reset", {},
                     static_cast<double>(r.get<i64>(0)));
        sink.gauge("casecore_pg_stats_reset_timestamp_seconds", "When this database's statistics were last reset (0: never)",
                   {}, r.get<double>(1));
      }
      sink.gauge("casecore_pg_connections", "Client connections open on the server (all databases)", {},
                 static_cast<double>(tx.query_one<i64>("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")));
      sink.gauge("casecore_pg_max_connections", "Server max_connections minus superuser_reserved_connections", {},
                 static_cast<double>(tx.query_one<i64>("SELECT current_setting('max_connections')::bigint - "
                                                      "current_setting('superuser_reserved_connections')::bigint")));
      // Planner estimates (pg_class.reltuples, refreshed by ANALYZE/autovacuum): no table is read.
      for (auto r : tx.exec("SELECT c.relname::text, c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'casecore\\_%' ORDER BY 1"))
        sink.gauge("casecore_table_rows_estimate", "Planner estimate of a casecore table's rows (-1: never analyzed)",
                   {{"table", r.get<std::string>(0)}}, r.get<double>(1));
    }
  });
}

std::string database_prometheus_text(database db, const exposition_options& o) {
  sample_sink sink;
  collect_build_info(sink, db);
  collect_database_wide(sink, db, o.wide);
  if (o.process_figures) collect_database(sink, db, o.process_label);
  return to_prometheus(sink.take());
}

} // namespace metrics

} // namespace casecore
