// Operator calls on the job queue: inspect, list, cancel, retry, prune (casecore/job_queue_admin.hpp).
#include "job_queue_internal.hpp"

#include <casecore/detail/text.hpp>
#include <casecore/job_queue_admin.hpp>

#include <algorithm>
#include <limits>

namespace casecore::jobs {

using namespace internal;

bool cancel(database& db, std::int64_t id) {
  return db.write([&](transaction& tx) {
    if (tx.exec("UPDATE casecore_jobs SET state = 'cancelled', cancel_requested = 1, finished_at = casecore_now_us() "
                "WHERE id = $1 AND state IN ('queued', 'scheduled', 'paused', 'waiting', 'blocked')",
                id)
            .affected() > 0) {
      dependency_ended(tx, id, "cancelled"); // its waiting dependents are blocked
      return true;
    }
    return tx.exec("UPDATE casecore_jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'", id).affected() > 0;
  });
}

job retry(database& db, std::int64_t id) {
  db.write([&](transaction& tx) {
    auto r = tx.exec("SELECT state, operation, subject FROM casecore_jobs WHERE id = $1" + std::string(tx.sql().for_update), id);
    if (r.empty()) throw not_found("job " + std::to_string(id) + " does not exist");
    const auto state = r[0].get<std::string>(0);
    if (state != "failed" && state != "cancelled")
      throw invalid_transition("job " + std::to_string(id) + " is " + std::string(to_string(parse_state(state))) +
                               ": only failed or cancelled jobs can be retried");
    // The waiting index would refuse the update anyway; checking first gives the operator the other job's id.
    if (auto other = tx.query_optional<std::int64_t>(
            "SELECT id FROM casecore_jobs WHERE operation = $1 AND subject = $2 AND state IN ('queued', 'scheduled', 'paused', 'waiting')",
            r[0].get<std::string>(1), r[0].get<std::string>(2)))
      throw already_exists("job " + std::to_string(*other) + " is already waiting for the same operation and subject");
    static const std::string requeue = sql({"UPDATE casecore_jobs AS j SET state = ", due_state("j"),
                                            ", attempts = 0, run_at = casecore_now_us(), finished_at = 0, "
                                            "cancel_requested = 0, lease_owner = '', lease_expires_at = 0 WHERE id = $1"});
    tx.exec(requeue, id);
    dependency_retried(tx, id); // back to waiting when its own dependencies are pending; dependents un-blocked
  });
  return *get(db, id);
}

std::size_t prune(database& db, const retention& keep, std::size_t batch, std::size_t max_rows) {
  checked_us(keep.max_age, "retention max_age");
  if (keep.max_finished < 0) raise(errc::invalid_argument, "retention max_finished must not be negative");
  if (batch < 1 || batch > 10000) raise(errc::invalid_argument, "prune batch must be 1..10000");
  std::size_t total = 0;
  const auto rows = static_cast<std::int64_t>(batch);
  // Small batches keep each transaction (and its locks) short on a table with millions of rows; the
  // count is from RETURNING, not affected(): SQLite counts the cascaded stage rows too.
  static const std::string by_age = sql(
      {"DELETE FROM casecore_jobs WHERE id IN (SELECT id FROM casecore_jobs WHERE state IN ", finished_states,
       " AND finished_at < casecore_now_us() - $1 ORDER BY finished_at LIMIT $2) RETURNING id"});
  static const std::string by_count = sql(
      {"DELETE FROM casecore_jobs WHERE id IN (SELECT id FROM casecore_jobs WHERE state IN ", finished_states,
       " AND (finished_at < $1 OR (finished_at = $1 AND id <= $2)) ORDER BY finished_at LIMIT $3) RETURNING id"});
  static const std::string cutoff = sql({"SELECT finished_at, id FROM casecore_jobs WHERE state IN ", finished_states,
                                         " ORDER BY finished_at DESC, id DESC LIMIT 1 OFFSET $1"});
  const auto enough = [&] { return max_rows > 0 && total >= max_rows; };
  if (keep.max_age.count() > 0) {
    for (;;) {
      const auto n = db.write([&](transaction& tx) { return tx.exec(by_age, checked_us(keep.max_age, "retention max_age"), rows).size(); });
      total += n;
      if (n < batch || enough()) break;
    }
  }
  if (keep.max_finished > 0 && !enough()) {
    // The newest max_finished finished jobs stay; the cut is taken once, so jobs finishing meanwhile
    // are newer than every deleted row.
    const auto cut = db.read([&](transaction& tx) -> std::optional<std::pair<micros, std::int64_t>> {
      auto r = tx.exec(cutoff, keep.max_finished);
      if (r.empty()) return std::nullopt;
      return std::pair{r[0].get<micros>(0), r[0].get<std::int64_t>(1)};
    });
    if (cut) {
      for (;;) {
        const auto n = db.write([&](transaction& tx) { return tx.exec(by_count, cut->first, cut->second, rows).size(); });
        total += n;
        if (n < batch || enough()) break;
      }
    }
  }
  return total;
}

std::size_t prune(database& db, std::chrono::milliseconds older_than) {
  checked_us(older_than, "prune age");
  // Unlike retention::max_age (0 = no age limit), 0 here means "everything finished before now".
  std::size_t total = 0;
  static const std::string q = sql(
      {"DELETE FROM casecore_jobs WHERE id IN (SELECT id FROM casecore_jobs WHERE state IN ", finished_states,
       " AND finished_at < casecore_now_us() - $1 ORDER BY finished_at LIMIT 5000) RETURNING id"});
  for (;;) {
    const auto n = db.write([&](transaction& tx) { return tx.exec(q, checked_us(older_than, "prune age")).size(); });
    total += n;
    if (n < 5000) return total;
  }
}

std::optional<job> get(database& db, std::int64_t id) {
  return db.read([&](transaction& tx) -> std::optional<job> {
    static const std::string q = sql({"SELECT ", job_columns, " FROM casecore_jobs WHERE id = $1"});
    auto r = tx.exec(q, id);
    if (r.empty()) return std::nullopt;
    return to_job(r[0]);
  });
}

std::vector<job> list(database& db, std::optional<job_state> state, std::size_t limit) {
  return list(db, list_query{state, {}, 0, limit});
}

std::vector<job> list(database& db, const list_query& query) {
  if (query.limit < 1 || query.limit > 10000) raise(errc::invalid_argument, "job list limit must be 1..10000");
  if (query.before_id < 0) raise(errc::invalid_argument, "job list cursor must not be negative");
  if (query.operation.size() > 100) raise(errc::invalid_argument, "job list operation filter is longer than 100 characters");
  return db.read([&](transaction& tx) {
    static const std::string q = sql({"SELECT ", job_columns,
                                      " FROM casecore_jobs WHERE ($1 = '' OR state = $1 OR ($1 = 'queued' AND state = 'scheduled')) "
                                      "AND ($2 = '' OR operation = $2) AND ($3 = 0 OR id < $3) ORDER BY id DESC LIMIT $4"});
    std::vector<job> out;
    for (auto r : tx.exec(q, query.state ? to_string(*query.state) : std::string_view{}, std::string_view{query.operation},
                          query.before_id, static_cast<std::int64_t>(query.limit)))
      out.push_back(to_job(r));
    return out;
  });
}

std::vector<stage_record> stages(database& db, std::int64_t id) {
  return db.read([&](transaction& tx) {
    std::vector<stage_record> out;
    for (auto r : tx.exec("SELECT stage, position, state, started_at, finished_at, attempts, error FROM casecore_job_stages "
                          "WHERE job_id = $1 ORDER BY position",
                          id))
      out.push_back({r.get<std::string>(0), r.get<int>(1), r.get<std::string>(2), r.get<micros>(3), r.get<micros>(4),
                     r.get<int>(5), r.get<std::string>(6)});
    return out;
  });
}

queue_stats inspect(database& db) {
  return db.read([](transaction& tx) {
    queue_stats s;
    for (auto r : tx.exec("SELECT state, count(*) FROM casecore_jobs GROUP BY state")) {
      const auto st = r.get<std::string>(0);
      s.by_state[std::string(to_string(parse_state(st)))] += r.get<std::int64_t>(1);
    }
    for (auto r : tx.exec("SELECT stages, current_stage, count(*) FROM casecore_jobs "
                          "WHERE state IN ('queued', 'scheduled', 'paused', 'running') GROUP BY stages, current_stage")) {
      const auto names = split_stages(r.get<std::string>(0));
      const auto at = r.get<std::size_t>(1);
      s.active_by_stage[at < names.size() ? names[at] : "done"] += r.get<std::int64_t>(2);
    }
    // 'queued' rows are due by construction; scheduled ones are due once run_at passed.
    auto ready = tx.exec("SELECT count(*), min(run_at), casecore_now_us() FROM casecore_jobs WHERE state = 'queued' "
                         "OR (state = 'scheduled' AND run_at <= casecore_now_us())");
    s.ready = ready[0].get<std::int64_t>(0);
    if (s.ready > 0) s.oldest_ready_age = std::max<micros>(0, ready[0].get<micros>(2) - ready[0].get<micros>(1));
    s.scheduled = tx.query_one<std::int64_t>(
        "SELECT count(*) FROM casecore_jobs WHERE state = 'scheduled' AND run_at > casecore_now_us()");
    for (auto r : tx.exec("SELECT id FROM casecore_jobs WHERE state = 'running' AND lease_expires_at < casecore_now_us() "
                          "ORDER BY id"))
      s.stuck.push_back(r.get<std::int64_t>(0));
    return s;
  });
}

namespace {

void check_target(const pause_target& t) {
  if (t.operation.empty() && t.concurrency_key.empty())
    raise(errc::invalid_argument, "a pause names an operation, a concurrency key or both");
  detail::check_printable(t.operation, "paused operation", 100, true);
  detail::check_printable(t.concurrency_key, "paused concurrency key", 200, true);
}

// The waiting rows a target covers, locked in id order (two pauses or resumes never deadlock on
// each other; claims skip locked rows and never wait for them). $1 = operation, $2 = key.
std::string covered(transaction& tx, std::string_view state) {
  return "SELECT id FROM casecore_jobs WHERE state = '" + std::string(state) +
         "' AND ($1 = '' OR operation = $1) AND ($2 = '' OR concurrency_key = $2) ORDER BY id" +
         std::string(tx.sql().for_no_key_update);
}

} // namespace

bool pause(database& db, const pause_target& target, std::string_view reason, std::string_view by) {
  check_target(target);
  detail::check_printable(reason, "pause reason", 500, true);
  detail::check_printable(by, "pause author", 200, true);
  return db.write([&](transaction& tx) {
    const bool created = tx.exec("INSERT INTO casecore_job_pauses(operation, concurrency_key, paused_at, paused_by, reason) "
                                 "VALUES($1, $2, casecore_now_us(), $3, $4) ON CONFLICT DO NOTHING",
                                 target.operation, target.concurrency_key, by, reason)
                             .affected() > 0;
    // Queued jobs leave the ready index: claims then never step over a paused backlog. Scheduled
    // ones are paused when they come due (the promote step reads the pauses).
    tx.exec("UPDATE casecore_jobs SET state = 'paused' WHERE id IN (" + covered(tx, "queued") + ")", target.operation,
            target.concurrency_key);
    return created;
  });
}

bool resume(database& db, const pause_target& target) {
  check_target(target);
  return db.write([&](transaction& tx) {
    const bool lifted = tx.exec("DELETE FROM casecore_job_pauses WHERE operation = $1 AND concurrency_key = $2",
                                target.operation, target.concurrency_key)
                            .affected() > 0;
    // Back to waiting: scheduled while not yet due, paused while another pause covers the job.
    tx.exec(sql({"UPDATE casecore_jobs AS j SET state = CASE WHEN j.run_at > casecore_now_us() THEN 'scheduled' ELSE ",
                 due_state("j"), " END WHERE id IN (", covered(tx, "paused"), ")"}),
            target.operation, target.concurrency_key);
    return lifted;
  });
}

std::vector<pause_record> pauses(database& db) {
  return db.read([](transaction& tx) {
    std::vector<pause_record> out;
    for (auto r : tx.exec("SELECT p.operation, p.concurrency_key, p.paused_at, p.paused_by, p.reason, "
                          "(SELECT count(*) FROM casecore_jobs j WHERE j.state = 'paused' AND (p.operation = '' OR "
                          "j.operation = p.operation) AND (p.concurrency_key = '' OR j.concurrency_key = p.concurrency_key)) "
                          "FROM casecore_job_pauses p ORDER BY p.paused_at, p.operation, p.concurrency_key"))
      out.push_back({{r.get<std::string>(0), r.get<std::string>(1)}, r.get<micros>(2), r.get<std::string>(3),
                     r.get<std::string>(4), r.get<std::int64_t>(5)});
    return out;
  });
}

} // namespace casecore::jobs
