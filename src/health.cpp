#include <casecore/detail/json.hpp>
#include <casecore/health.hpp>

#include <algorithm>
#include <cstdio>

namespace casecore::health {

std::string_view to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::warn: return "warn";
    case status::critical: return "critical";
  }
  return "unknown";
}

namespace {

void check_pair(double warn, double critical, const char* what) {
  if (!(warn >= 0) || !(critical >= warn)) raise(errc::invalid_argument, std::string("health thresholds: ") + what + " needs 0 <= warn <= critical");
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Add a finding when `value` exceeds a threshold; critical wins over warn.
void judge(report& r, std::string check, double value, double warn, double critical, const std::string& what) {
  status level = value > critical ? status::critical : value > warn ? status::warn : status::ok;
  if (level == status::ok) return;
  const double limit = level == status::critical ? critical : warn;
  r.findings.push_back({level, check, value, limit, what + " is " + number(value) + " (threshold " + number(limit) + ")"});
  r.overall = std::max(r.overall, level);
}

void json_string(std::string& out, std::string_view s) { detail::append_json_string(out, s); }

} // namespace

std::string report::to_json() const {
  std::string out = "{\"status\":";
  json_string(out, to_string(overall));
  out += ",\"findings\":[";
  for (std::size_t i = 0; i < findings.size(); ++i) {
    const auto& f = findings[i];
    if (i) out += ',';
    out += "{\"level\":";
    json_string(out, to_string(f.level));
    out += ",\"check\":";
    json_string(out, f.check);
    out += ",\"value\":" + number(f.value) + ",\"threshold\":" + number(f.threshold) + ",\"reason\":";
    json_string(out, f.reason);
    out += '}';
  }
  out += "]}";
  return out;
}

std::optional<double> deadlocks_last_hour(const std::vector<deadlock_sample>& earlier, const deadlock_sample& now) {
  const deadlock_sample *hour_old = nullptr, *oldest = nullptr;
  for (const auto& e : earlier) {
    // A sample from before a statistics reset (or from a clock that went back) counts nothing.
    if (e.stats_reset != now.stats_reset || e.at > now.at || e.deadlocks > now.deadlocks) continue;
    if (now.at - e.at >= 3600 && (!hour_old || e.at > hour_old->at)) hour_old = &e;
    if (!oldest || e.at < oldest->at) oldest = &e;
  }
  if (const auto* base = hour_old ? hour_old : oldest) return now.deadlocks - base->deadlocks;
  if (now.stats_reset > 0 && now.at - now.stats_reset < 3600) return now.deadlocks;
  return std::nullopt;
}

report check_figures(const std::vector<metrics::family>& figures, const database_limits& limits,
                     std::optional<double> deadlocks_per_hour, std::vector<std::string>* skipped) {
  auto skip = [&](std::string why) {
    if (skipped) skipped->push_back(std::move(why));
  };
  auto total = [&](std::string_view name, std::string_view label, std::string_view value) -> std::optional<double> {
    std::optional<double> sum;
    for (const auto& f : figures) {
      if (f.name != name) continue;
      sum = sum.value_or(0);
      for (const auto& s : f.samples) {
        if (!s.suffix.empty()) continue;
        bool match = label.empty();
        for (const auto& [k, v] : s.label_pairs)
          if (k == label && v == value) match = true;
        if (match) *sum += s.value;
      }
    }
    return sum;
  };
  auto largest = [&](std::string_view name) -> std::optional<double> {
    std::optional<double> top;
    for (const auto& f : figures)
      if (f.name == name)
        for (const auto& s : f.samples) top = std::max(top.value_or(s.value), s.value);
    return top;
  };
  report r;
  auto limit = [&](const std::optional<double>& lim, const char* check, std::optional<double> value, const std::string& what,
                   const char* missing) {
    if (!lim) return;
    if (!value) return skip(std::string(check) + ": " + missing);
    judge(r, check, *value, *lim, *lim, what);
  };
  std::optional<double> pool_use;
  const auto conns = total("casecore_pg_connections", "", ""), max_conns = total("casecore_pg_max_connections", "", "");
  if (conns && max_conns && *max_conns > 0) pool_use = *conns / *max_conns;
  limit(limits.max_pool_use, "pool_use", pool_use, "server connections in use (fraction of max_connections)",
        "no server connection figures (SQLite has no connection limit)");
  // A database without the table has nothing queued: 0, not "unknown".
  const bool jobs = total("casecore_schema_version", "component", "casecore.jobs").has_value();
  auto or_zero = [&](std::optional<double> v) { return jobs ? std::optional<double>(v.value_or(0)) : v; };
  limit(limits.max_queue, "queue_length", or_zero(total("casecore_jobs", "state", "queued")), "queued jobs", "no job tables");
  limit(limits.max_oldest_ready_seconds, "oldest_ready_seconds", or_zero(largest("casecore_jobs_oldest_ready_age_seconds")),
        "age of the oldest due job in seconds", "no job tables");
  limit(limits.max_stuck, "stuck_claims", or_zero(total("casecore_jobs_stuck", "", "")), "running jobs with an expired claim",
        "no job tables");
  limit(limits.max_failed_recent, "failed_recent", or_zero(total("casecore_jobs_recent_finished", "state", "failed")),
        "jobs failed in the metrics window", "no job tables");
  const bool outbox = total("casecore_schema_version", "component", "casecore").has_value();
  auto outbox_value = [&](std::optional<double> v) { return outbox ? std::optional<double>(v.value_or(0)) : v; };
  limit(limits.max_outbox, "outbox_backlog", outbox_value(total("casecore_outbox_messages", "", "")), "undelivered outbox messages",
        "no outbox table");
  limit(limits.max_outbox_age_seconds, "outbox_age_seconds", outbox_value(largest("casecore_outbox_oldest_age_seconds")),
        "age of the oldest undelivered outbox message in seconds", "no outbox table");
  const bool pg = total("casecore_pg_deadlocks_total", "", "").has_value();
  limit(limits.max_deadlocks_per_hour, "deadlocks_per_hour", deadlocks_per_hour, "deadlocks in the last hour",
        pg ? "no earlier sample of the deadlock counter yet (keep one with --state FILE; the next run has the figure)"
           : "SQLite reports no deadlocks (one writer at a time)");
  return r;
}

monitor::monitor(thresholds t) : limits_(t) {
  check_pair(t.pool_use_warn, t.pool_use_critical, "pool_use");
  check_pair(t.pool_waiting_warn, t.pool_waiting_critical, "pool_waiting");
  check_pair(t.pool_timeouts_per_hour_warn, t.pool_timeouts_per_hour_critical, "pool_timeouts_per_hour");
  check_pair(t.deadlocks_per_hour_warn, t.deadlocks_per_hour_critical, "deadlocks_per_hour");
  check_pair(t.serialization_per_hour_warn, t.serialization_per_hour_critical, "serialization_per_hour");
  check_pair(t.outcome_unknown_per_hour_warn, t.outcome_unknown_per_hour_critical, "outcome_unknown_per_hour");
}

void monitor::add_database(database db, std::string name) {
  if (name.empty()) raise(errc::invalid_argument, "health: database name must not be empty");
  std::lock_guard lock(mutex_);
  watched_db w{std::move(db), std::move(name), {}};
  // The baseline: failures that happened before the monitor started are not "in the last hour".
  const auto t = w.db.tx_stats();
  const auto p = w.db.pool_stats();
  w.history.push_back({std::chrono::steady_clock::now(), p.timeouts, t.retries_deadlock, t.retries_serialization, t.outcome_unknown});
  dbs_.push_back(std::move(w));
}

void monitor::add_queue(std::string name, std::function<double()> length, double warn_above, double critical_above) {
  if (name.empty() || !length) raise(errc::invalid_argument, "health: a queue needs a name and a length function");
  check_pair(warn_above, critical_above, "queue length");
  std::lock_guard lock(mutex_);
  queues_.push_back({std::move(name), std::move(length), warn_above, critical_above});
}

report monitor::check() { return check(std::chrono::steady_clock::now()); }

report monitor::check(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  report r;
  for (auto& w : dbs_) check_database(w, now, r);
  for (const auto& q : queues_) {
    try {
      judge(r, q.name + ".queue_length", q.length(), q.warn, q.critical, q.name + " queue length");
    } catch (const std::exception& e) {
      r.findings.push_back({status::critical, q.name + ".queue_length", 0, 0, q.name + " queue length unavailable: " + e.what()});
      r.overall = status::critical;
    }
  }
  return r;
}

void monitor::check_database(watched_db& w, std::chrono::steady_clock::time_point now, report& r) {
  const auto p = w.db.pool_stats();
  const auto t = w.db.tx_stats();
  const counts current{now, p.timeouts, t.retries_deadlock, t.retries_serialization, t.outcome_unknown};
  // Keep the newest sample that is at least an hour old as the window's start.
  while (w.history.size() > 1 && now - w.history[1].at >= std::chrono::hours(1)) w.history.pop_front();
  const counts& base = w.history.front();
  w.history.push_back(current);

  const auto& l = limits_;
  const double use = p.capacity ? static_cast<double>(p.in_use) / static_cast<double>(p.capacity) : 0;
  judge(r, w.name + ".pool_use", use, l.pool_use_warn, l.pool_use_critical, w.name + " pool use");
  judge(r, w.name + ".pool_waiting", static_cast<double>(p.waiting), l.pool_waiting_warn, l.pool_waiting_critical,
        w.name + " callers waiting for a connection");
  auto delta = [](std::uint64_t a, std::uint64_t b) { return static_cast<double>(a >= b ? a - b : 0); };
  judge(r, w.name + ".pool_timeouts_per_hour", delta(current.timeouts, base.timeouts), l.pool_timeouts_per_hour_warn,
        l.pool_timeouts_per_hour_critical, w.name + " pool timeouts in the last hour");
  judge(r, w.name + ".deadlocks_per_hour", delta(current.deadlocks, base.deadlocks), l.deadlocks_per_hour_warn,
        l.deadlocks_per_hour_critical, w.name + " deadlocks in the last hour");
  judge(r, w.name + ".serialization_per_hour", delta(current.serialization, base.serialization),
        l.serialization_per_hour_warn, l.serialization_per_hour_critical, w.name + " serialization failures in the last hour");
  judge(r, w.name + ".outcome_unknown_per_hour", delta(current.unknown, base.unknown), l.outcome_unknown_per_hour_warn,
        l.outcome_unknown_per_hour_critical, w.name + " commits of unknown outcome in the last hour");
}

} // namespace casecore::health
