// Job dependencies (issue 13): edges between jobs, and the state changes that follow a dependency's
// end (guarantees in the "Dependencies" part of casecore/job_queue.hpp).
//
// Storage: casecore_job_deps(job_id, depends_on, satisfied). `satisfied` turns 1 in the transaction
// that completes the dependency. A waiting job becomes due when it has no unsatisfied edge left.
//
// Why fan-in is exact on PostgreSQL (READ COMMITTED, what db.write uses): two transactions complete
// the two dependencies A and B of job J. Each first marks its own edge satisfied, then locks J
// (FOR NO KEY UPDATE, in id order), then — in a NEW statement, so with a new snapshot — asks "any
// unsatisfied edge left?". The second to lock J waits for the first to commit, so its question
// sees the first's edge: whichever commits last releases J; the one before sees the other's edge
// still unsatisfied and leaves J waiting. A single UPDATE with the question as a subquery would not
// do: its subquery keeps the statement's old snapshot (both would see the other edge unsatisfied).
// Why enqueue cannot miss a completion: enqueue reads the dependencies FOR SHARE, which conflicts
// with the completion's row lock; one waits for the other and then sees its committed result.
// SQLite has one writer: every transaction sees the previous one whole.
#include "job_queue_internal.hpp"

#include <casecore/detail/step.hpp>
#include <casecore/migration.hpp>

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>

namespace casecore {

namespace detail {
std::vector<migration> job_dependency_migrations() {
  return {
      // depends_on < job_id: a dependency exists before its dependent, so no cycle can be stored. No
      // foreign key on depends_on: pruning a finished dependency must stay possible (its dependents
      // were already released or blocked when it finished).
      {"casecore.job_deps", 1, "job dependencies (waiting and blocked states)",
       "CREATE TABLE casecore_job_deps(job_id BIGINT NOT NULL REFERENCES casecore_jobs(id) ON DELETE CASCADE,"
       " depends_on BIGINT NOT NULL, satisfied INTEGER NOT NULL DEFAULT 0,"
       " PRIMARY KEY(job_id, depends_on), CHECK (depends_on < job_id));"
       "CREATE INDEX casecore_job_deps_on ON casecore_job_deps(depends_on) WHERE satisfied = 0;"
       // A job waiting for its dependencies holds its key's waiting slot like a queued one.
       "DROP INDEX casecore_jobs_waiting;"
       "CREATE UNIQUE INDEX casecore_jobs_waiting ON casecore_jobs(operation, subject) "
       "WHERE state IN ('queued', 'scheduled', 'paused', 'waiting');"
       // Metrics count waiting / blocked jobs through this index.
       "CREATE INDEX casecore_jobs_held ON casecore_jobs(operation) WHERE state IN ('waiting', 'blocked')",
       "", ""},
  };
}
} // namespace detail

namespace jobs::internal {

namespace {

constexpr std::size_t max_dependencies = 1000;

// Ids as one bound parameter, and the SQL that reads it as a set: '{1,2}' / '[1,2]'.
std::string id_list(transaction& tx, const std::vector<std::int64_t>& v) {
  const bool pg = tx.dialect() == dialect::postgresql;
  std::string s(1, pg ? '{' : '[');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  s += pg ? '}' : ']';
  return s;
}

std::string in_list(transaction& tx, std::string_view param) {
  if (tx.dialect() == dialect::postgresql) return " = ANY(CAST(" + std::string(param) + " AS BIGINT[]))";
  return " IN (SELECT value FROM json_each(" + std::string(param) + "))";
}

std::string lock_suffix(transaction& tx) { return std::string(tx.sql().for_no_key_update); }

bool ends_badly(std::string_view state) { return state == "failed" || state == "cancelled" || state == "blocked"; }

// The state a released job takes: scheduled while its run_at is ahead, else queued (paused under a pause).
std::string released_state() { return "CASE WHEN j.run_at > casecore_now_us() THEN 'scheduled' ELSE " + due_state("j") + " END"; }

// The reasoning above needs a new snapshot per statement. Under REPEATABLE READ or SERIALIZABLE a
// completion waiting on a share lock (or on a dependent's row lock that was not an update) would go
// on with its old snapshot and miss the edge, so those levels are refused rather than silently wrong.
void require_read_committed(transaction& tx, std::string_view what) {
  if (tx.dialect() != dialect::postgresql) return;
  const auto level = tx.query_one<std::string>("SELECT current_setting('transaction_isolation')");
  if (level != "read committed")
    raise(errc::invalid_argument, std::string(what) + " needs a READ COMMITTED transaction on PostgreSQL (this one is " +
                                      level + ")");
}

} // namespace

std::vector<std::int64_t> checked_dependencies(const job_spec& spec) {
  if (spec.depends_on.size() > max_dependencies)
    raise(errc::invalid_argument, "a job depends on at most 1000 jobs");
  std::set<std::int64_t> unique(spec.depends_on.begin(), spec.depends_on.end());
  for (auto id : unique)
    if (id <= 0) raise(errc::invalid_argument, "dependency job id " + std::to_string(id) + " is not a job id");
  return {unique.begin(), unique.end()};
}

std::vector<std::pair<std::int64_t, std::string>> lock_dependencies(transaction& tx, const std::vector<std::int64_t>& ids) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  if (ids.empty()) return out;
  require_read_committed(tx, "jobs::enqueue with depends_on");
  // FOR SHARE conflicts with a completion's FOR NO KEY UPDATE: see the file comment. Id order keeps
  // two enqueues and a completion from locking in opposite orders.
  const bool pg = tx.dialect() == dialect::postgresql;
  const auto q = "SELECT id, state FROM casecore_jobs WHERE id" + in_list(tx, "$1") + " ORDER BY id" +
                 std::string(pg ? " FOR SHARE" : "");
  for (auto r : tx.exec(q, id_list(tx, ids))) out.emplace_back(r.get<std::int64_t>(0), r.get<std::string>(1));
  if (out.size() != ids.size()) {
    std::set<std::int64_t> found;
    for (const auto& [id, st] : out) found.insert(id);
    for (auto id : ids)
      if (!found.count(id)) raise(errc::invalid_argument, "dependency job " + std::to_string(id) + " does not exist");
  }
  detail::step("jobs.deps.locked");
  return out;
}

void attach_dependencies(transaction& tx, std::int64_t id, const std::vector<std::pair<std::int64_t, std::string>>& deps) {
  if (deps.empty()) return;
  std::vector<std::int64_t> pending;
  std::optional<std::pair<std::int64_t, std::string>> bad;
  for (const auto& [dep, state] : deps) {
    if (dep == id) raise(errc::invalid_argument, "job " + std::to_string(id) + " cannot depend on itself");
    if (dep > id)
      raise(errc::invalid_argument, "dependency job " + std::to_string(dep) + " is newer than job " + std::to_string(id) +
                                        " (a job of this key already waits): a job can only depend on older jobs");
    if (state != "succeeded") pending.push_back(dep);
    if (!bad && ends_badly(state)) bad = std::pair{dep, state};
  }
  std::vector<std::int64_t> all, done;
  for (const auto& [dep, state] : deps) (state == "succeeded" ? done : all).push_back(dep);
  // (WHERE 1 = 1: SQLite needs a WHERE before ON CONFLICT after a SELECT, to parse it.)
  const auto insert = "INSERT INTO casecore_job_deps(job_id, depends_on, satisfied) SELECT CAST($1 AS BIGINT), "
                      "CAST(value AS BIGINT), CAST($2 AS INTEGER) FROM " +
                      std::string(tx.dialect() == dialect::postgresql ? "unnest(CAST($3 AS BIGINT[])) AS value"
                                                                      : "(SELECT value FROM json_each($3))") +
                      " WHERE 1 = 1 ON CONFLICT DO NOTHING";
  if (!all.empty()) tx.exec(insert, id, std::int64_t{0}, id_list(tx, all));
  if (!done.empty()) tx.exec(insert, id, std::int64_t{1}, id_list(tx, done));
  if (pending.empty()) return;
  // Only a job that still waits (this enqueue's new row, or the key's waiting job it joined) changes.
  if (bad)
    tx.exec("UPDATE casecore_jobs SET state = 'blocked', last_error = $1 WHERE id = $2 "
            "AND state IN ('queued', 'scheduled', 'paused', 'waiting')",
            "blocked: dependency job " + std::to_string(bad->first) + " is " + bad->second, id);
  else
    tx.exec("UPDATE casecore_jobs SET state = 'waiting' WHERE id = $1 AND state IN ('queued', 'scheduled', 'paused')", id);
}

void dependencies_succeeded(transaction& tx, const std::vector<std::int64_t>& ids) {
  if (ids.empty()) return;
  std::set<std::int64_t> dependents;
  for (auto r : tx.exec("UPDATE casecore_job_deps SET satisfied = 1 WHERE satisfied = 0 AND depends_on" + in_list(tx, "$1") +
                            " RETURNING job_id",
                        id_list(tx, ids)))
    dependents.insert(r.get<std::int64_t>(0));
  if (dependents.empty()) return; // the common case: one indexed statement, nothing else
  require_read_committed(tx, "completing a job that others depend on");
  detail::step("jobs.deps.satisfied");
  const std::vector<std::int64_t> list(dependents.begin(), dependents.end());
  const auto param = id_list(tx, list);
  // Lock first (id order), then ask in a new statement: see the file comment.
  tx.exec("SELECT id FROM casecore_jobs WHERE state = 'waiting' AND id" + in_list(tx, "$1") + " ORDER BY id" + lock_suffix(tx),
          param);
  detail::step("jobs.deps.dependents_locked");
  tx.exec("UPDATE casecore_jobs AS j SET state = " + released_state() +
              " WHERE j.state = 'waiting' AND j.id" + in_list(tx, "$1") +
              " AND NOT EXISTS (SELECT 1 FROM casecore_job_deps d WHERE d.job_id = j.id AND d.satisfied = 0)",
          param);
}

void dependency_ended(transaction& tx, std::int64_t id, std::string_view state) {
  const std::string reason = "blocked: dependency job " + std::to_string(id) + " is " + std::string(state);
  // The waiting jobs that (transitively) wait for `id`, locked in id order, then blocked. Repeated
  // until none is left: a dependent enqueued while this ran (its enqueue held `id` or one of the
  // dependents FOR SHARE) is seen by the next round's new snapshot.
  static const std::string closure =
      "WITH RECURSIVE c(id) AS (SELECT job_id FROM casecore_job_deps WHERE depends_on = $1 AND satisfied = 0 "
      "UNION SELECT d.job_id FROM casecore_job_deps d JOIN c ON d.depends_on = c.id WHERE d.satisfied = 0) "
      "SELECT j.id FROM casecore_jobs j WHERE j.state = 'waiting' AND j.id IN (SELECT id FROM c) ORDER BY j.id";
  for (int round = 0; round < 100; ++round) {
    std::vector<std::int64_t> found;
    for (auto r : tx.exec(closure + lock_suffix(tx), id)) found.push_back(r.get<std::int64_t>(0));
    if (found.empty()) return;
    detail::step("jobs.deps.blocking");
    tx.exec("UPDATE casecore_jobs SET state = 'blocked', last_error = $1 WHERE state = 'waiting' AND id" + in_list(tx, "$2"),
            reason, id_list(tx, found));
  }
}

void dependency_retried(transaction& tx, std::int64_t id) {
  // The retried job itself waits again while its own dependencies are pending (a job cancelled
  // while it waited), or stays blocked behind one that failed.
  static const std::string pending_of =
      "SELECT p.id, p.state FROM casecore_job_deps d JOIN casecore_jobs p ON p.id = d.depends_on "
      "WHERE d.job_id = $1 AND d.satisfied = 0 ORDER BY CASE WHEN p.state IN ('failed', 'cancelled', 'blocked') THEN 0 ELSE 1 END, p.id";
  if (auto own = tx.exec(pending_of, id); !own.empty()) {
    const auto dep = own[0].get<std::int64_t>(0);
    const auto st = own[0].get<std::string>(1);
    if (ends_badly(st))
      tx.exec("UPDATE casecore_jobs SET state = 'blocked', last_error = $1 WHERE id = $2",
              "blocked: dependency job " + std::to_string(dep) + " is " + st, id);
    else
      tx.exec("UPDATE casecore_jobs SET state = 'waiting', last_error = '' WHERE id = $1", id);
  }
  static const std::string closure =
      "WITH RECURSIVE c(id) AS (SELECT job_id FROM casecore_job_deps WHERE depends_on = $1 AND satisfied = 0 "
      "UNION SELECT d.job_id FROM casecore_job_deps d JOIN c ON d.depends_on = c.id WHERE d.satisfied = 0) "
      "SELECT j.id, j.operation, j.subject FROM casecore_jobs j WHERE j.state = 'blocked' AND j.id IN (SELECT id FROM c) ORDER BY j.id";
  std::vector<std::tuple<std::int64_t, std::string, std::string>> found;
  for (auto r : tx.exec(closure + lock_suffix(tx), id))
    found.emplace_back(r.get<std::int64_t>(0), r.get<std::string>(1), r.get<std::string>(2));
  // In id order, which is dependency order (a dependency is older): each job's dependencies were
  // decided before it.
  for (const auto& [job, operation, subject] : found) {
    auto still = tx.exec("SELECT p.id, p.state FROM casecore_job_deps d JOIN casecore_jobs p ON p.id = d.depends_on "
                         "WHERE d.job_id = $1 AND d.satisfied = 0 AND p.state IN ('failed', 'cancelled', 'blocked') "
                         "ORDER BY p.id LIMIT 1",
                         job);
    if (!still.empty()) {
      tx.exec("UPDATE casecore_jobs SET last_error = $1 WHERE id = $2",
              "blocked: dependency job " + std::to_string(still[0].get<std::int64_t>(0)) + " is " + still[0].get<std::string>(1), job);
      continue;
    }
    // A blocked job does not hold its key's waiting slot: a newer request of the key supersedes it.
    if (auto newer = tx.query_optional<std::int64_t>(
            "SELECT id FROM casecore_jobs WHERE operation = $1 AND subject = $2 AND state IN ('queued', 'scheduled', 'paused', 'waiting')",
            operation, subject)) {
      tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), last_error = $1 WHERE id = $2",
              "superseded by job " + std::to_string(*newer), job);
      dependency_ended(tx, job, "cancelled");
      continue;
    }
    tx.exec("UPDATE casecore_jobs SET state = 'waiting', last_error = '' WHERE id = $1", job);
  }
}

} // namespace jobs::internal
} // namespace casecore
