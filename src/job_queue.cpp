#include "narrow.hpp"
#include <casecore/detail/job_sql.hpp>
#include <casecore/detail/step.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/job_queue.hpp>
#include "job_queue_internal.hpp"
#include <casecore/migration.hpp>

#include <algorithm>
#include <array>
#include <mutex>
#include <random>
#include <set>

namespace casecore {

namespace detail {
std::vector<migration> job_migrations() {
  return {
      {"casecore.jobs", 1, "jobs and stage progress",
       "CREATE TABLE casecore_jobs("
       " id {{id}}, operation TEXT NOT NULL, subject TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '',"
       " stages TEXT NOT NULL, stage_count INTEGER NOT NULL DEFAULT 1, current_stage INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued',"
       " priority INTEGER NOT NULL DEFAULT 0, run_at BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
       " max_attempts INTEGER NOT NULL, concurrency_key TEXT NOT NULL DEFAULT '',"
       " cancel_requested INTEGER NOT NULL DEFAULT 0, lease_owner TEXT NOT NULL DEFAULT '',"
       " lease_epoch BIGINT NOT NULL DEFAULT 0, lease_expires_at BIGINT NOT NULL DEFAULT 0,"
       " heartbeat_at BIGINT NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',"
       " created_at BIGINT NOT NULL, started_at BIGINT NOT NULL DEFAULT 0, finished_at BIGINT NOT NULL DEFAULT 0);"
       // One active job per (operation, subject): the database enforces dedup, for bulk inserts too.
       "CREATE UNIQUE INDEX casecore_jobs_active ON casecore_jobs(operation, subject) WHERE state IN ('queued', 'running');"
       // The ready path and the running set only index live rows, so finished rows never slow claims.
       "CREATE INDEX casecore_jobs_ready ON casecore_jobs(priority DESC, run_at, id) WHERE state = 'queued';"
       "CREATE INDEX casecore_jobs_running ON casecore_jobs(lease_expires_at) WHERE state = 'running';"
       "CREATE INDEX casecore_jobs_running_key ON casecore_jobs(concurrency_key) WHERE state = 'running';"
       "CREATE INDEX casecore_jobs_finished ON casecore_jobs(finished_at) WHERE state IN ('succeeded', 'failed', 'cancelled');"
       "CREATE TABLE casecore_job_stages("
       " job_id BIGINT NOT NULL REFERENCES casecore_jobs(id) ON DELETE CASCADE, position INTEGER NOT NULL,"
       " stage TEXT NOT NULL, state TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL,"
       " attempts INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '', PRIMARY KEY(job_id, position))",
       "", ""},
      // Version 2 (issues 10 and 17): job keys (one waiting + one running job per key), a separate
      // 'scheduled' state for jobs due later (claims never read them), database-wide fencing tokens,
      // and storage settings. casecore_jobs_running (lease_expires_at) goes: an index on the column
      // every heartbeat writes would make each heartbeat a non-HOT update of every index; reclaims
      // find the few running rows through casecore_jobs_running_job instead. casecore_jobs_running_key
      // now leaves out jobs without a key, so the claim's "does a job of this key run?" probe can only
      // use casecore_jobs_running_job (seen with stale statistics: the planner walked every running
      // row through the key index for every candidate, 125,000 buffers per claim).
      {"casecore.jobs", 2, "job keys, scheduled state, fencing tokens, storage settings", "",
       "CREATE TABLE casecore_job_fence(id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);"
       "INSERT INTO casecore_job_fence(id, token) SELECT 1, coalesce(max(lease_epoch), 0) FROM casecore_jobs;"
       "DROP INDEX casecore_jobs_active;"
       "DROP INDEX casecore_jobs_running;"
       "UPDATE casecore_jobs SET state = 'scheduled' WHERE state = 'queued' AND run_at > casecore_now_us();"
       "CREATE UNIQUE INDEX casecore_jobs_waiting ON casecore_jobs(operation, subject) WHERE state IN ('queued', 'scheduled');"
       "CREATE UNIQUE INDEX casecore_jobs_running_job ON casecore_jobs(operation, subject) WHERE state = 'running';"
       "CREATE INDEX casecore_jobs_scheduled ON casecore_jobs(run_at) WHERE state = 'scheduled';"
       "DROP INDEX casecore_jobs_running_key;"
       "CREATE INDEX casecore_jobs_running_key ON casecore_jobs(concurrency_key) WHERE state = 'running' AND concurrency_key <> ''",
       // The STABLE clock is the statement's start on the database clock: usable as an index bound
       // (casecore_now_us() is VOLATILE, so `run_at <= casecore_now_us()` can only be a filter).
       "CREATE OR REPLACE FUNCTION casecore_stmt_now_us() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE AS "
       "$$ SELECT (extract(epoch from statement_timestamp()) * 1000000)::bigint $$;"
       "CREATE SEQUENCE casecore_job_fence;"
       "SELECT setval('casecore_job_fence', (SELECT coalesce(max(lease_epoch), 0) + 1 FROM casecore_jobs), false);"
       "DROP INDEX casecore_jobs_active;"
       "DROP INDEX casecore_jobs_running;"
       "UPDATE casecore_jobs SET state = 'scheduled' WHERE state = 'queued' AND run_at > casecore_now_us();"
       "CREATE UNIQUE INDEX casecore_jobs_waiting ON casecore_jobs(operation, subject) WHERE state IN ('queued', 'scheduled');"
       "CREATE UNIQUE INDEX casecore_jobs_running_job ON casecore_jobs(operation, subject) WHERE state = 'running';"
       "CREATE INDEX casecore_jobs_scheduled ON casecore_jobs(run_at) WHERE state = 'scheduled';"
       "DROP INDEX casecore_jobs_running_key;"
       "CREATE INDEX casecore_jobs_running_key ON casecore_jobs(concurrency_key) WHERE state = 'running' AND concurrency_key <> '';"
       // Room on every page for heartbeat versions (HOT: no index entry per heartbeat), and vacuum
       // after 1 % of the rows changed instead of 20 %: a queue's table is rewritten constantly.
       "ALTER TABLE casecore_jobs SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, "
       "autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0.05, "
       "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 1);"
       "ALTER TABLE casecore_job_stages SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, "
       "autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 1)"},
      // Version 3 (issue 13): durable pauses. A pause names an operation, a concurrency key, or both
      // ('' = any); the waiting jobs it covers move to 'paused' (out of the ready index, so claims never
      // step over a paused backlog) and the claim also refuses any 'queued' job a pause covers (a job
      // queued by a transaction that did not see the pause). A paused job still holds its key's
      // waiting slot. Rebuilding casecore_jobs_waiting blocks writes to the jobs table while it runs.
      {"casecore.jobs", 3, "durable pauses of operations and concurrency keys",
       "CREATE TABLE casecore_job_pauses(operation TEXT NOT NULL, concurrency_key TEXT NOT NULL,"
       " paused_at BIGINT NOT NULL, paused_by TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
       " PRIMARY KEY(operation, concurrency_key));"
       "DROP INDEX casecore_jobs_waiting;"
       "CREATE UNIQUE INDEX casecore_jobs_waiting ON casecore_jobs(operation, subject) WHERE state IN ('queued', 'scheduled', 'paused');"
       "CREATE INDEX casecore_jobs_paused ON casecore_jobs(operation, concurrency_key) WHERE state = 'paused'",
       "", ""},
  };
}

namespace job_sql {

namespace {
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out += p;
  return out;
}

constexpr std::string_view returning_j =
    " RETURNING j.id, j.operation, j.subject, j.payload, j.stages, j.current_stage, j.state, j.priority, j.run_at, "
    "j.attempts, j.max_attempts, j.concurrency_key, j.cancel_requested, j.lease_owner, j.lease_epoch, j.lease_expires_at, "
    "j.heartbeat_at, j.last_error, j.created_at, j.finished_at";

// SQLite's RETURNING cannot name the table's alias.
constexpr std::string_view returning_bare =
    " RETURNING id, operation, subject, payload, stages, current_stage, state, priority, run_at, attempts, max_attempts, "
    "concurrency_key, cancel_requested, lease_owner, lease_epoch, lease_expires_at, heartbeat_at, last_error, created_at, "
    "finished_at";

// A waiting job is never claimed while a job of its key runs: runs of one key never overlap.
constexpr std::string_view no_running_sibling =
    "NOT EXISTS (SELECT 1 FROM casecore_jobs r WHERE r.operation = q.operation AND r.subject = q.subject "
    "AND r.state = 'running')";
// PostgreSQL: OFFSET 0 keeps the check a per-row probe of casecore_jobs_running_job. Pulled up into
// a join, the planner may choose to hash-anti-join and sort the WHOLE ready set instead of walking
// the ready index until the batch is full (seen: 46,000 rows sorted per claim, 200 ms each), more
// so with a generic plan, where LIMIT $1 is assumed to be 10 % of the table.
constexpr std::string_view no_running_sibling_pg =
    "NOT EXISTS (SELECT 1 FROM casecore_jobs r WHERE r.operation = q.operation AND r.subject = q.subject "
    "AND r.state = 'running' OFFSET 0)";

// No pause covers q (casecore_job_pauses: '' matches any operation / key). The uncorrelated "no
// pause at all" test runs once per statement (an InitPlan) and, true, ends the OR before the
// per-row probe: without pauses a claim pays nothing per candidate. PostgreSQL: OFFSET 0 keeps the
// probe per row, for the reason given above.
constexpr std::string_view not_paused =
    "(NOT EXISTS (SELECT 1 FROM casecore_job_pauses) OR NOT EXISTS (SELECT 1 FROM casecore_job_pauses z "
    "WHERE (z.operation = q.operation OR z.operation = '') AND (z.concurrency_key = q.concurrency_key OR z.concurrency_key = '')))";
constexpr std::string_view not_paused_pg =
    "(NOT EXISTS (SELECT 1 FROM casecore_job_pauses) OR NOT EXISTS (SELECT 1 FROM casecore_job_pauses z "
    "WHERE (z.operation = q.operation OR z.operation = '') AND (z.concurrency_key = q.concurrency_key OR z.concurrency_key = '') "
    "OFFSET 0))";

constexpr std::string_view claim_set =
    "SET state = 'running', lease_owner = $1, lease_expires_at = casecore_now_us() + $2, heartbeat_at = casecore_now_us(), "
    "attempts = j.attempts + 1, started_at = CASE WHEN j.started_at = 0 THEN casecore_now_us() ELSE j.started_at END, ";
} // namespace

// The batch is written into the statement as a number, never bound: with `LIMIT $1` PostgreSQL's
// generic plan (chosen after five executions of a prepared statement) assumes 10 % of the table, and
// for a queue of 100,000 jobs it merge-joined the whole primary key and JIT-compiled every claim
// (seen: claims running for minutes). The value is an integer checked to be 1..1000, so it is no
// injection risk; each batch size gets its own cached statement.
std::string limit_clause(std::int64_t n) {
  if (n < 1 || n > 1000) raise(errc::invalid_argument, "job batch must be 1..1000");
  return " LIMIT " + std::to_string(n);
}

std::string promote(dialect d, std::int64_t limit) {
  if (d == dialect::postgresql)
    return cat({"WITH p AS (SELECT id FROM casecore_jobs WHERE state = 'scheduled' AND run_at <= casecore_stmt_now_us() "
                "ORDER BY run_at",
                limit_clause(limit),
                " FOR NO KEY UPDATE SKIP LOCKED) UPDATE casecore_jobs AS j SET state = ", jobs::internal::due_state("j"), " FROM p WHERE j.id = p.id"});
  return cat({"UPDATE casecore_jobs AS j SET state = ", jobs::internal::due_state("j"), " WHERE id IN (SELECT id FROM casecore_jobs WHERE state = 'scheduled' "
              "AND run_at <= casecore_now_us() ORDER BY run_at",
              limit_clause(limit), ")"});
}

std::string claim(dialect d, std::int64_t batch) {
  // PostgreSQL: every claimed row draws its token from the sequence, in this statement.
  if (d == dialect::postgresql)
    return cat({"WITH c AS (SELECT q.id FROM casecore_jobs q WHERE q.state = 'queued' AND ", no_running_sibling_pg, " AND ",
                not_paused_pg,
                " ORDER BY q.priority DESC, q.run_at, q.id", limit_clause(batch),
                " FOR NO KEY UPDATE SKIP LOCKED) UPDATE casecore_jobs AS j ", claim_set,
                "lease_epoch = nextval('casecore_job_fence') FROM c WHERE j.id = c.id", returning_j});
  // SQLite (one writer): the candidates are picked first (claim_candidates_sqlite), then claimed with
  // tokens counter + 1 + their position ($3 = JSON array of ids), then the counter is advanced.
  static const std::string lite = cat(
      {"UPDATE casecore_jobs AS j ", claim_set,
       "lease_epoch = (SELECT token FROM casecore_job_fence WHERE id = 1) + 1 + c.k "
       "FROM (SELECT key AS k, value AS v FROM json_each($3)) AS c WHERE j.id = c.v AND j.state = 'queued'",
       returning_bare});
  return lite;
}

std::string_view no_running_sibling_text(bool pg) { return pg ? no_running_sibling_pg : no_running_sibling; }

std::string_view not_paused_text(bool pg) { return pg ? not_paused_pg : not_paused; }

std::string claim_candidates_sqlite(std::int64_t batch) {
  return cat({"SELECT q.id FROM casecore_jobs q WHERE q.state = 'queued' AND ", no_running_sibling, " AND ", not_paused,
              " ORDER BY q.priority DESC, q.run_at, q.id", limit_clause(batch)});
}

const std::string& heartbeat(dialect d) {
  // Rows locked right now (a completing batch, a guarded check) are skipped, never waited for.
  static const std::string pg =
      "WITH h AS (SELECT j.id FROM casecore_jobs j JOIN unnest($2::bigint[], $3::bigint[]) AS r(id, token) "
      "ON j.id = r.id AND j.lease_epoch = r.token WHERE j.state = 'running' AND j.lease_expires_at >= casecore_now_us() "
      "ORDER BY j.id FOR NO KEY UPDATE OF j SKIP LOCKED) "
      "UPDATE casecore_jobs AS j SET lease_expires_at = casecore_now_us() + $1, heartbeat_at = casecore_now_us() "
      "FROM h WHERE j.id = h.id RETURNING j.id, j.cancel_requested";
  static const std::string lite =
      "UPDATE casecore_jobs AS j SET lease_expires_at = casecore_now_us() + $1, heartbeat_at = casecore_now_us() "
      "FROM (SELECT a.value AS hid, b.value AS htoken FROM json_each($2) a JOIN json_each($3) b ON a.key = b.key) AS r "
      "WHERE j.id = r.hid AND j.lease_epoch = r.htoken AND j.state = 'running' AND j.lease_expires_at >= casecore_now_us() "
      "RETURNING id, cancel_requested";
  return d == dialect::postgresql ? pg : lite;
}

// Of the refs a heartbeat did not extend, those still held (their row was locked: skipped, not lost).
const std::string& heartbeat_busy(dialect d) {
  static const std::string pg =
      "SELECT j.id FROM casecore_jobs j JOIN unnest($1::bigint[], $2::bigint[]) AS r(id, token) "
      "ON j.id = r.id AND j.lease_epoch = r.token WHERE j.state = 'running' AND j.lease_expires_at >= casecore_now_us()";
  static const std::string lite =
      "SELECT j.id FROM casecore_jobs j JOIN (SELECT a.value AS hid, b.value AS htoken FROM json_each($1) a "
      "JOIN json_each($2) b ON a.key = b.key) AS r ON j.id = r.hid AND j.lease_epoch = r.htoken "
      "WHERE j.state = 'running' AND j.lease_expires_at >= casecore_now_us()";
  return d == dialect::postgresql ? pg : lite;
}

const std::string& reclaim(dialect d) {
  // An expired claim goes back to waiting, unless it was cancelled, is out of attempts, or a newer
  // job of its key already waits (then it is superseded by that job). $1: how long (µs) the claim
  // must have been expired (0 for every expired claim; the worker's backstop passes more).
  auto text = [](std::string_view lock, std::string_view returning) {
    return cat({"WITH x AS (SELECT q.id AS xid, (SELECT w.id FROM casecore_jobs w WHERE w.operation = q.operation "
                "AND w.subject = q.subject AND w.state IN ('queued', 'scheduled', 'paused', 'waiting')) AS newer "
                "FROM casecore_jobs q WHERE q.state = 'running' AND q.lease_expires_at < casecore_now_us() - $1 LIMIT 100",
                lock,
                ") UPDATE casecore_jobs AS j SET "
                "state = CASE WHEN j.cancel_requested = 1 OR x.newer IS NOT NULL THEN 'cancelled' "
                "WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END, "
                "finished_at = CASE WHEN j.cancel_requested = 1 OR x.newer IS NOT NULL OR j.attempts >= j.max_attempts "
                "THEN casecore_now_us() ELSE 0 END, "
                "last_error = CASE WHEN x.newer IS NOT NULL THEN 'lease expired: worker lost; superseded by job ' || "
                "CAST(x.newer AS TEXT) ELSE 'lease expired: worker lost' END, "
                "lease_owner = '', lease_expires_at = 0, run_at = casecore_now_us() FROM x WHERE j.id = x.xid RETURNING ",
                returning});
  };
  static const std::string pg = text(" FOR NO KEY UPDATE OF q SKIP LOCKED", "j.id, j.state");
  static const std::string lite = text("", "id, state");
  return d == dialect::postgresql ? pg : lite;
}

const std::string& complete_pg() {
  // Rows are locked in id order (two completions can never deadlock on each other), and only while
  // the claim is still held and unexpired on the database clock.
  static const std::string s =
      "WITH l AS (SELECT j.id FROM casecore_jobs j JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(id, token, stage) "
      "ON j.id = r.id AND j.lease_epoch = r.token AND j.current_stage = r.stage "
      "WHERE j.state = 'running' AND j.lease_expires_at >= casecore_now_us() ORDER BY j.id FOR NO KEY UPDATE OF j) "
      "UPDATE casecore_jobs AS j SET current_stage = j.current_stage + 1, "
      "state = CASE WHEN j.current_stage + 1 >= j.stage_count THEN 'succeeded' ELSE 'running' END, "
      "finished_at = CASE WHEN j.current_stage + 1 >= j.stage_count THEN casecore_now_us() ELSE 0 END, "
      "lease_owner = CASE WHEN j.current_stage + 1 >= j.stage_count THEN '' ELSE j.lease_owner END, "
      "lease_expires_at = CASE WHEN j.current_stage + 1 >= j.stage_count THEN 0 ELSE j.lease_expires_at END, "
      "last_error = CASE WHEN j.current_stage + 1 >= j.stage_count THEN '' ELSE j.last_error END, "
      "heartbeat_at = casecore_now_us() FROM l WHERE j.id = l.id RETURNING j.id, j.stages, j.state, j.cancel_requested";
  return s;
}

const std::string& replace_payload() {
  static const std::string s = "UPDATE casecore_jobs SET payload = $3 WHERE operation = $1 AND subject = $2 "
                               "AND state IN ('queued', 'scheduled', 'paused', 'waiting') RETURNING id";
  return s;
}

const std::string& check(dialect d) {
  static const std::string pg = "SELECT 1 FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running' "
                                "AND lease_expires_at >= casecore_now_us() FOR NO KEY UPDATE";
  static const std::string lite = "SELECT 1 FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running' "
                                  "AND lease_expires_at >= casecore_now_us()";
  return d == dialect::postgresql ? pg : lite;
}

} // namespace job_sql
} // namespace detail

namespace jobs {

namespace internal {

std::string due_state(std::string_view t) {
  const std::string a(t);
  return "CASE WHEN EXISTS (SELECT 1 FROM casecore_job_pauses z WHERE (z.operation = " + a + ".operation OR z.operation = '') "
         "AND (z.concurrency_key = " + a + ".concurrency_key OR z.concurrency_key = '')) THEN 'paused' ELSE 'queued' END";
}

// Milliseconds → microseconds for the database, refusing values whose product would overflow.
std::int64_t checked_us(std::chrono::milliseconds ms, std::string_view what) {
  constexpr std::int64_t max_ms = std::int64_t{100} * 366 * 24 * 3600 * 1000; // a century
  if (ms.count() < 0 || ms.count() > max_ms)
    raise(errc::invalid_argument, std::string(what) + " must be 0 ms .. 100 years");
  return ms.count() * 1000;
}

std::vector<std::string> split_stages(const std::string& joined) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= joined.size()) {
    const auto comma = joined.find(',', start);
    const auto end = comma == std::string::npos ? joined.size() : comma;
    out.emplace_back(joined.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

job_state parse_state(const std::string& s) {
  if (s == "scheduled") return job_state::queued; // waiting for its run_at: queued, to the API
  if (auto st = state_from_string(s)) return *st;
  raise(errc::internal, "unknown job state '" + s + "'");
}

job to_job(const row_ref& r) {
  job j;
  j.id = r.get<std::int64_t>(0);
  j.operation = r.get<std::string>(1);
  j.subject = r.get<std::string>(2);
  j.payload = r.get<std::string>(3);
  j.stages = split_stages(r.get<std::string>(4));
  j.current_stage = r.get<int>(5);
  j.state = parse_state(r.get<std::string>(6));
  j.priority = r.get<int>(7);
  j.run_at = r.get<micros>(8);
  j.attempts = r.get<int>(9);
  j.max_attempts = r.get<int>(10);
  j.concurrency_key = r.get<std::string>(11);
  j.cancel_requested = r.get<bool>(12);
  j.lease_owner = r.get<std::string>(13);
  j.lease_epoch = r.get<std::int64_t>(14);
  j.lease_expires_at = r.get<micros>(15);
  j.heartbeat_at = r.get<micros>(16);
  j.last_error = r.get<std::string>(17);
  j.created_at = r.get<micros>(18);
  j.finished_at = r.get<micros>(19);
  return j;
}

std::string sql(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out += p;
  return out;
}

} // namespace internal

using namespace internal;

namespace {

namespace sqlt = detail::job_sql;

constexpr std::size_t bulk_chunk = 50;
constexpr int bulk_columns = 9;
constexpr std::int64_t advisory_limit_key = 0x636a6f62; // "cjob": serialises claims that honour limits

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == ':';
}

void check_stage_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !std::all_of(s.begin(), s.end(), is_name_char))
    raise(errc::invalid_argument, "stage name must be 1..64 of [A-Za-z0-9_.:-]: '" + std::string(s) + "'");
}

void check_owner(std::string_view owner) { detail::check_printable(owner, "worker owner", 200); }

std::int64_t lease_us(std::chrono::milliseconds lease) {
  if (lease.count() <= 0) raise(errc::invalid_argument, "job lease must be positive");
  return checked_us(lease, "job lease");
}

std::string join_stages(const std::vector<std::string>& stages) {
  if (stages.empty()) return "run";
  if (stages.size() > 64) raise(errc::invalid_argument, "a job declares at most 64 stages");
  std::string out;
  std::set<std::string_view> seen;
  for (const auto& s : stages) {
    check_stage_name(s);
    if (!seen.insert(s).second) raise(errc::invalid_argument, "stage '" + s + "' declared twice");
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

// Integers as one bound text parameter: '{1,2}' (a PostgreSQL array) or '[1,2]' (JSON for SQLite).
std::string int_list(dialect d, const std::vector<std::int64_t>& v) {
  const bool pg = d == dialect::postgresql;
  std::string s(1, pg ? '{' : '[');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  s += pg ? '}' : ']';
  return s;
}

// A validated spec, ready to bind.
struct prepared_spec {
  const job_spec* spec;
  std::string stages;
  std::int64_t stage_count;
  std::vector<std::int64_t> deps; // sorted, unique
};

prepared_spec validate(const job_spec& s) {
  // Operations, subjects and keys reach operators' terminals and JSON (issue 16 #5): printable UTF-8.
  detail::check_printable(s.operation, "job operation", 100);
  detail::check_printable(s.subject, "job subject", 200);
  if (s.payload.size() > 1024 * 1024) raise(errc::invalid_argument, "job payload larger than 1 MiB");
  if (s.max_attempts < 1 || s.max_attempts > 1000) raise(errc::invalid_argument, "job max_attempts must be 1..1000");
  checked_us(s.delay, "job delay");
  detail::check_printable(s.concurrency_key, "job concurrency_key", 200, true);
  return {&s, join_stages(s.stages), s.stages.empty() ? 1 : detail::narrow<std::int64_t>(s.stages.size(), "stage count"),
          checked_dependencies(s)};
}

} // namespace

void internal::check_spec(const job_spec& spec) { validate(spec); }

namespace {

constexpr std::string_view insert_head =
    "INSERT INTO casecore_jobs(operation, subject, payload, stages, priority, run_at, max_attempts, concurrency_key, "
    "stage_count, created_at, state) VALUES";

// Multi-row INSERT texts for 1..bulk_chunk rows, built once so each stays a cached prepared statement.
// A job with a delay is born 'scheduled' (claims never read it until a claim promotes it when due), a job
// a pause covers is born 'paused'.
const std::string& bulk_insert_sql(std::size_t rows) {
  static const std::array<std::string, bulk_chunk + 1> texts = [] {
    std::array<std::string, bulk_chunk + 1> t;
    for (std::size_t n = 1; n <= bulk_chunk; ++n) {
      std::string s(insert_head);
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<int>(i) * bulk_columns;
        auto p = [&](int k) { return "$" + std::to_string(b + k); };
        s += (i ? ", (" : " (") + p(1) + ", " + p(2) + ", " + p(3) + ", " + p(4) + ", " + p(5) +
             ", casecore_now_us() + " + p(6) + ", " + p(7) + ", " + p(8) + ", " + p(9) +
             ", casecore_now_us(), CASE WHEN EXISTS (SELECT 1 FROM casecore_job_pauses z WHERE (z.operation = " + p(1) +
             " OR z.operation = '') AND (z.concurrency_key = " + p(8) + " OR z.concurrency_key = '')) THEN 'paused' WHEN " +
             p(6) + " > 0 THEN 'scheduled' ELSE 'queued' END)";
      }
      s += " ON CONFLICT DO NOTHING RETURNING id, operation, subject";
      t[n] = std::move(s);
    }
    return t;
  }();
  return texts[rows];
}

void bind_spec(std::vector<value>& params, const prepared_spec& p) {
  const auto& s = *p.spec;
  params.emplace_back(s.operation);
  params.emplace_back(s.subject);
  params.emplace_back(s.payload);
  params.emplace_back(p.stages);
  params.emplace_back(std::int64_t{s.priority});
  params.emplace_back(checked_us(s.delay, "job delay"));
  params.emplace_back(std::int64_t{s.max_attempts});
  params.emplace_back(s.concurrency_key);
  params.emplace_back(p.stage_count);
}

// The waiting job of the key takes the newest payload; its row stays locked until the caller's
// transaction commits, so no claim can start it before the caller's business write is visible.
std::optional<std::int64_t> replace_waiting_payload(transaction& tx, const job_spec& s) {
  return tx.query_optional<std::int64_t>(sqlt::replace_payload(), s.operation, s.subject, s.payload);
}

enqueued enqueue_one(transaction& tx, const prepared_spec& p) {
  // Dependencies are read (and on PostgreSQL share-locked) before anything is written: an unknown
  // id is refused with nothing written (job_dependencies.cpp).
  const auto deps = lock_dependencies(tx, p.deps);
  // Insert, and on conflict update the waiting job; it may be claimed in between, so loop.
  for (int round = 0; round < 100; ++round) {
    std::vector<value> params;
    bind_spec(params, p);
    auto r = tx.exec_values(bulk_insert_sql(1), params);
    if (!r.empty()) {
      attach_dependencies(tx, r[0].get<std::int64_t>(0), deps);
      return {r[0].get<std::int64_t>(0), true};
    }
    if (auto id = replace_waiting_payload(tx, *p.spec)) {
      attach_dependencies(tx, *id, deps); // the key's waiting job waits for the union
      return {*id, false};
    }
  }
  raise(errc::internal, "enqueue did not converge");
}

micros jittered_delay_us(const backoff& delays, int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  const auto base = std::max<std::int64_t>(delays.base.count(), 0) * 1000;
  const auto cap = std::max<std::int64_t>(delays.max.count(), 0) * 1000;
  const int shift = std::clamp(attempt - 1, 0, 30);
  const auto full = std::min<std::int64_t>(cap, base << shift);
  std::uniform_int_distribution<std::int64_t> pick(full / 2, std::max<std::int64_t>(full, full / 2));
  return pick(rng);
}

void upsert_stage(transaction& tx, std::int64_t id, int position, const std::string& stage, std::string_view state,
                  micros started_at, std::string_view error) {
  tx.exec("INSERT INTO casecore_job_stages(job_id, position, stage, state, started_at, finished_at, attempts, error) "
          "VALUES($1, $2, $3, $4, $5, casecore_now_us(), 1, $6) "
          "ON CONFLICT(job_id, position) DO UPDATE SET state = excluded.state, started_at = excluded.started_at, "
          "finished_at = excluded.finished_at, attempts = casecore_job_stages.attempts + 1, error = excluded.error",
          id, position, stage, state, started_at, error);
}

constexpr std::size_t complete_chunk = 50;

// SQLite's completion (one writer: no lock order to keep): OR-chains of 1..50 claims.
const std::string& complete_sqlite(std::size_t n) {
  static const std::array<std::string, complete_chunk + 1> texts = [] {
    std::array<std::string, complete_chunk + 1> t;
    for (std::size_t k = 1; k <= complete_chunk; ++k) {
      std::string s =
          "UPDATE casecore_jobs SET current_stage = current_stage + 1, "
          "state = CASE WHEN current_stage + 1 >= stage_count THEN 'succeeded' ELSE 'running' END, "
          "finished_at = CASE WHEN current_stage + 1 >= stage_count THEN casecore_now_us() ELSE 0 END, "
          "lease_owner = CASE WHEN current_stage + 1 >= stage_count THEN '' ELSE lease_owner END, "
          "lease_expires_at = CASE WHEN current_stage + 1 >= stage_count THEN 0 ELSE lease_expires_at END, "
          "last_error = CASE WHEN current_stage + 1 >= stage_count THEN '' ELSE last_error END, "
          "heartbeat_at = casecore_now_us() WHERE state = 'running' AND lease_expires_at >= casecore_now_us() AND (";
      for (std::size_t i = 0; i < k; ++i) {
        const auto b = static_cast<int>(i) * 3;
        s += (i ? " OR " : "") + std::string("(id = $") + std::to_string(b + 1) + " AND lease_epoch = $" +
             std::to_string(b + 2) + " AND current_stage = $" + std::to_string(b + 3) + ")";
      }
      s += ") RETURNING id, stages, state, cancel_requested";
      t[k] = std::move(s);
    }
    return t;
  }();
  return texts[n];
}

const std::string& stage_rows_sql(std::size_t n) {
  static const std::array<std::string, complete_chunk + 1> texts = [] {
    std::array<std::string, complete_chunk + 1> t;
    for (std::size_t k = 1; k <= complete_chunk; ++k) {
      std::string s = "INSERT INTO casecore_job_stages(job_id, position, stage, state, started_at, finished_at, attempts, error) VALUES";
      for (std::size_t i = 0; i < k; ++i) {
        const auto b = static_cast<int>(i) * 4;
        s += (i ? ", (" : " (") + std::string("$") + std::to_string(b + 1) + ", $" + std::to_string(b + 2) + ", $" +
             std::to_string(b + 3) + ", 'succeeded', $" + std::to_string(b + 4) + ", casecore_now_us(), 1, '')";
      }
      s += " ON CONFLICT(job_id, position) DO UPDATE SET state = excluded.state, started_at = excluded.started_at, "
           "finished_at = excluded.finished_at, attempts = casecore_job_stages.attempts + 1, error = ''";
      t[k] = std::move(s);
    }
    return t;
  }();
  return texts[n];
}

// The fenced row of a held, unexpired claim, locked until commit.
struct fenced_row {
  std::vector<std::string> stages;
  int current_stage = 0;
  int attempts = 0;
  int max_attempts = 0;
  bool cancel_requested = false;
  std::string operation;
  std::string subject;
};

std::optional<fenced_row> lock_claim(transaction& tx, const claim_ref& ref) {
  auto r = tx.exec("SELECT stages, current_stage, attempts, max_attempts, cancel_requested, operation, subject "
                   "FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running' "
                   "AND lease_expires_at >= casecore_now_us()" + std::string(tx.sql().for_no_key_update),
                   ref.id, ref.epoch);
  if (r.empty()) return std::nullopt;
  return fenced_row{split_stages(r[0].get<std::string>(0)), r[0].get<int>(1), r[0].get<int>(2), r[0].get<int>(3),
                    r[0].get<bool>(4), r[0].get<std::string>(5), r[0].get<std::string>(6)};
}

[[noreturn]] void throw_lost(const claim_ref& ref) {
  throw lease_lost("job " + std::to_string(ref.id) + " token " + std::to_string(ref.epoch) +
                   " is no longer held (reclaimed, or its lease expired)");
}

// The waiting job of the same key, if any (a running job going back to waiting is superseded by it).
std::optional<std::int64_t> waiting_sibling(transaction& tx, const fenced_row& row) {
  return tx.query_optional<std::int64_t>(
      "SELECT id FROM casecore_jobs WHERE operation = $1 AND subject = $2 AND state IN ('queued', 'scheduled', 'paused', 'waiting')",
      row.operation, row.subject);
}

std::string superseded_note(std::string_view why, std::int64_t newer) {
  return std::string(why) + (why.empty() ? "" : "; ") + "superseded by job " + std::to_string(newer);
}

// A running job going back to waiting can collide with a job of its key enqueued concurrently (the
// waiting index refuses the second); the next attempt sees that job committed and supersedes.
template <class F> auto retry_on_new_sibling(F&& f) {
  for (int round = 0;; ++round) {
    try {
      return f();
    } catch (const error& e) {
      if (e.code() != errc::already_exists || round >= 3) throw;
    }
  }
}

void claim_sqlite(transaction& tx, const std::vector<std::int64_t>& ids, const claim_options& o, std::vector<job>& out) {
  if (ids.empty()) return;
  for (auto r : tx.exec(sqlt::claim(dialect::sqlite, 1), o.owner, lease_us(o.lease), int_list(dialect::sqlite, ids)))
    out.push_back(to_job(r));
  tx.exec("UPDATE casecore_job_fence SET token = token + $1 WHERE id = 1", static_cast<std::int64_t>(ids.size()));
}

const std::string& claim_one_pg() {
  static const std::string s = sql(
      {"UPDATE casecore_jobs AS j SET state = 'running', lease_owner = $2, lease_expires_at = casecore_now_us() + $3, "
       "heartbeat_at = casecore_now_us(), attempts = j.attempts + 1, "
       "started_at = CASE WHEN j.started_at = 0 THEN casecore_now_us() ELSE j.started_at END, "
       "lease_epoch = nextval('casecore_job_fence') WHERE j.id = $1 AND j.state = 'queued' RETURNING ",
       job_columns});
  return s;
}

// Claims that honour limits: count running rows in the database while no other limited claim can
// run (advisory transaction lock on PostgreSQL, the single writer on SQLite), then pick candidates
// whose key still has room.
std::vector<job> claim_limited(transaction& tx, const claim_options& o) {
  const bool pg = tx.dialect() == dialect::postgresql;
  if (const auto lock = tx.sql().transaction_lock; !lock.empty()) tx.exec(lock, advisory_limit_key);
  std::int64_t room = detail::narrow<std::int64_t>(o.batch, "claim batch");
  if (o.max_running > 0) {
    const auto running = tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE state = 'running'");
    room = std::min<std::int64_t>(room, o.max_running - running);
  }
  std::vector<job> out;
  if (room <= 0) return out;
  // Candidates to look at: 4x the room, rounded up to a power of two so that few statement texts exist.
  std::int64_t window = 32;
  while (window < room * 4 + 16) window *= 2;
  const std::int64_t per_key = o.max_per_key > 0 ? o.max_per_key : std::numeric_limits<int>::max();
  // The window is a number in the text, like the batch of a claim (see job_sql::limit_clause).
  const auto candidates = sql(
      {"SELECT q.id, q.concurrency_key FROM casecore_jobs q WHERE q.state = 'queued' AND ",
       detail::job_sql::no_running_sibling_text(pg), " AND ", detail::job_sql::not_paused_text(pg),
       " AND (q.concurrency_key = '' OR q.concurrency_key NOT IN (SELECT concurrency_key FROM casecore_jobs "
       "WHERE state = 'running' AND concurrency_key <> '' GROUP BY concurrency_key HAVING count(*) >= $1)) "
       "ORDER BY q.priority DESC, q.run_at, q.id LIMIT ",
       std::to_string(window), pg ? " FOR NO KEY UPDATE OF q SKIP LOCKED" : ""});
  auto found = tx.exec(candidates, per_key);
  std::map<std::string, std::int64_t> running_per_key;
  std::vector<std::int64_t> chosen;
  for (auto c : found) {
    if (static_cast<std::int64_t>(chosen.size()) >= room) break;
    const auto key = c.get<std::string>(1);
    if (!key.empty()) {
      auto it = running_per_key.find(key);
      if (it == running_per_key.end())
        it = running_per_key
                 .emplace(key, tx.query_one<std::int64_t>(
                                   "SELECT count(*) FROM casecore_jobs WHERE state = 'running' AND concurrency_key <> '' "
                                   "AND concurrency_key = $1",
                                   key))
                 .first;
      if (it->second >= per_key) continue;
      ++it->second;
    }
    chosen.push_back(c.get<std::int64_t>(0));
  }
  if (!pg) {
    claim_sqlite(tx, chosen, o, out);
    return out;
  }
  for (auto id : chosen) {
    auto r = tx.exec(claim_one_pg(), id, o.owner, lease_us(o.lease));
    if (!r.empty()) out.push_back(to_job(r[0]));
  }
  return out;
}

write_options short_write(std::chrono::milliseconds lock_timeout, std::chrono::milliseconds budget) {
  write_options w;
  w.lock_timeout = lock_timeout;
  retry_policy r;
  r.max_attempts = 3;
  r.budget = budget;
  w.retry = r;
  return w;
}

} // namespace

std::optional<job_state> state_from_string(std::string_view name) noexcept {
  for (auto st : {job_state::queued, job_state::running, job_state::succeeded, job_state::failed, job_state::cancelled,
                  job_state::paused, job_state::waiting, job_state::blocked})
    if (to_string(st) == name) return st;
  return std::nullopt;
}

std::string_view to_string(job_state s) noexcept {
  switch (s) {
    case job_state::queued: return "queued";
    case job_state::running: return "running";
    case job_state::succeeded: return "succeeded";
    case job_state::failed: return "failed";
    case job_state::cancelled: return "cancelled";
    case job_state::paused: return "paused";
    case job_state::waiting: return "waiting";
    case job_state::blocked: return "blocked";
  }
  return "unknown";
}

job_spec pipeline::make(std::string_view operation, std::string_view subject, std::string_view payload) const {
  const auto it = operations.find(std::string(operation));
  if (it == operations.end()) raise(errc::invalid_argument, "pipeline has no operation '" + std::string(operation) + "'");
  job_spec s;
  s.operation = it->first;
  s.subject = subject;
  s.payload = payload;
  s.stages = it->second;
  return s;
}

enqueued enqueue(transaction& tx, const job_spec& spec) {
  const auto p = validate(spec);
  if (!tx.writable()) raise(errc::invalid_argument, "jobs::enqueue needs a write transaction");
  return enqueue_one(tx, p);
}

enqueued enqueue(database& db, const job_spec& spec) {
  validate(spec);
  return db.write([&](transaction& tx) { return enqueue(tx, spec); });
}

std::vector<enqueued> enqueue_bulk(transaction& tx, std::span<const job_spec> specs) {
  std::vector<prepared_spec> prepared;
  prepared.reserve(specs.size());
  for (const auto& s : specs) prepared.push_back(validate(s)); // all-or-nothing validation first
  if (!tx.writable()) raise(errc::invalid_argument, "jobs::enqueue_bulk needs a write transaction");
  // The last spec of each key is the one enqueued (the newest request wins, as for single enqueues).
  std::map<std::pair<std::string_view, std::string_view>, std::size_t> last;
  for (std::size_t i = 0; i < specs.size(); ++i) last[{specs[i].operation, specs[i].subject}] = i;
  // Insert in (operation, subject) order so two concurrent bulk enqueues wait on each other's keys in
  // the same order (no deadlock on PostgreSQL).
  std::vector<std::size_t> order;
  order.reserve(last.size());
  for (const auto& [key, i] : last) order.push_back(i);
  // Specs with dependencies take the one-by-one path (their dependencies are locked first).
  std::vector<std::size_t> plain;
  for (auto i : order)
    if (prepared[i].deps.empty()) plain.push_back(i);
  std::vector<enqueued> out(specs.size());
  std::map<std::pair<std::string, std::string>, std::int64_t> created;
  std::vector<value> params;
  for (std::size_t start = 0; start < plain.size(); start += bulk_chunk) {
    const auto n = std::min(bulk_chunk, plain.size() - start);
    params.clear();
    for (std::size_t k = 0; k < n; ++k) bind_spec(params, prepared[plain[start + k]]);
    for (auto r : tx.exec_values(bulk_insert_sql(n), params))
      created.emplace(std::make_pair(r.get<std::string>(1), r.get<std::string>(2)), r.get<std::int64_t>(0));
  }
  for (auto i : order) {
    const auto it = created.find({specs[i].operation, specs[i].subject});
    out[i] = it != created.end() && prepared[i].deps.empty() ? enqueued{it->second, true} : enqueue_one(tx, prepared[i]);
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto chosen = last.at({specs[i].operation, specs[i].subject});
    if (chosen != i) out[i] = {out[chosen].id, false}; // earlier duplicates of one call
  }
  return out;
}

std::vector<job> claim(database& db, const claim_options& o) {
  check_owner(o.owner);
  const auto us = lease_us(o.lease);
  if (o.batch == 0 || o.batch > 1000) raise(errc::invalid_argument, "claim batch must be 1..1000");
  if (o.max_running < 0 || o.max_per_key < 0) raise(errc::invalid_argument, "claim limits must not be negative");
  const auto batch = detail::narrow<std::int64_t>(o.batch, "claim batch");
  auto jobs = db.write([&](transaction& tx) {
    const auto d = tx.dialect();
    // Jobs that became due since the last claim join the ready set first (an index range read).
    tx.exec(sqlt::promote(d, batch));
    detail::step("jobs.claim.promoted");
    // PostgreSQL: the claim must walk the ready index in its order and stop after the batch. With
    // statistics that undercount waiting jobs (taken while the queue was empty, or none yet) the
    // planner instead reads every waiting job, runs the per-row probes on each and sorts them all
    // (seen: 120,000 buffers for a claim of 100 next to 20,000 waiting jobs). No sorting in this
    // transaction leaves it the index walk whatever the statistics say.
    if (d == dialect::postgresql) tx.exec("SELECT set_config('enable_sort', 'off', true)");
    if (o.max_running > 0 || o.max_per_key > 0) return claim_limited(tx, o);
    std::vector<job> out;
    if (d == dialect::postgresql) {
      for (auto r : tx.exec(sqlt::claim(d, batch), o.owner, us)) out.push_back(to_job(r));
      return out;
    }
    std::vector<std::int64_t> ids;
    for (auto r : tx.exec(sqlt::claim_candidates_sqlite(batch))) ids.push_back(r.get<std::int64_t>(0));
    claim_sqlite(tx, ids, o, out);
    return out;
  });
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return std::tuple(-a.priority, a.run_at, a.id) < std::tuple(-b.priority, b.run_at, b.id);
  });
  return jobs;
}

void check(transaction& tx, const claim_ref& ref) {
  // Locks the job row until the guarded transaction ends, so a reclaim cannot slip in before commit.
  if (!tx.query_optional<std::int64_t>(sqlt::check(tx.dialect()), ref.id, ref.epoch)) throw_lost(ref);
}

std::map<std::int64_t, bool> heartbeat(database& db, std::span<const claim_ref> refs, std::chrono::milliseconds lease,
                                       std::vector<std::int64_t>* lost) {
  const auto us = lease_us(lease);
  std::map<std::int64_t, bool> alive;
  std::vector<std::int64_t> gone;
  if (!refs.empty()) {
    std::vector<std::int64_t> ids, tokens;
    for (const auto& r : refs) {
      ids.push_back(r.id);
      tokens.push_back(r.epoch);
    }
    detail::step("jobs.heartbeat");
    // Never waits on a row lock (SKIP LOCKED); the lock timeout only bounds table-level waits.
    const auto w = short_write(std::max(lease / 4, std::chrono::milliseconds(10)), lease / 3);
    db.write([&](transaction& tx) {
      alive.clear();
      gone.clear();
      const auto d = tx.dialect();
      const auto id_list = int_list(d, ids), token_list = int_list(d, tokens);
      for (auto r : tx.exec(sqlt::heartbeat(d), us, id_list, token_list)) alive[r.get<std::int64_t>(0)] = r.get<bool>(1);
      if (alive.size() == refs.size()) return;
      std::set<std::int64_t> busy;
      for (auto r : tx.exec(sqlt::heartbeat_busy(d), id_list, token_list)) busy.insert(r.get<std::int64_t>(0));
      for (const auto& ref : refs)
        if (!alive.count(ref.id) && !busy.count(ref.id)) gone.push_back(ref.id);
    }, w);
  }
  if (lost) *lost = std::move(gone);
  return alive;
}

std::vector<stage_outcome> complete_stages(transaction& tx, std::span<const stage_done> done) {
  std::vector<stage_outcome> out(done.size());
  std::map<std::int64_t, std::size_t> index;
  for (std::size_t i = 0; i < done.size(); ++i) index[done[i].ref.id] = i;
  if (index.size() != done.size()) raise(errc::invalid_argument, "complete_stages: a job appears twice");
  if (done.empty()) return out;
  const bool pg = tx.dialect() == dialect::postgresql;
  std::vector<std::size_t> held;
  std::map<std::size_t, std::string> names; // stage name of each held completion
  auto take = [&](const result& rows) {
    for (auto r : rows) {
      const auto i = index.at(r.get<std::int64_t>(0));
      out[i] = {true, r.get<std::string>(2) == "succeeded", r.get<bool>(3)};
      const auto all = split_stages(r.get<std::string>(1));
      const auto pos = static_cast<std::size_t>(done[i].stage);
      names[i] = pos < all.size() ? all[pos] : std::string("?");
      held.push_back(i);
    }
  };
  if (pg) {
    std::vector<std::int64_t> ids, tokens, stages;
    for (const auto& d : done) {
      ids.push_back(d.ref.id);
      tokens.push_back(d.ref.epoch);
      stages.push_back(d.stage);
    }
    take(tx.exec(sqlt::complete_pg(), int_list(dialect::postgresql, ids), int_list(dialect::postgresql, tokens),
                 int_list(dialect::postgresql, stages)));
  } else {
    std::vector<value> params;
    for (std::size_t start = 0; start < done.size(); start += complete_chunk) {
      const auto n = std::min(complete_chunk, done.size() - start);
      params.clear();
      for (std::size_t k = 0; k < n; ++k) {
        const auto& d = done[start + k];
        params.emplace_back(d.ref.id);
        params.emplace_back(d.ref.epoch);
        params.emplace_back(std::int64_t{d.stage});
      }
      take(tx.exec_values(complete_sqlite(n), params));
    }
  }
  // Stage rows of the completions that held, in id order (the same order as the job rows).
  std::sort(held.begin(), held.end(), [&](std::size_t a, std::size_t b) { return done[a].ref.id < done[b].ref.id; });
  std::vector<value> stage_params;
  for (std::size_t start = 0; start < held.size(); start += complete_chunk) {
    const auto n = std::min(complete_chunk, held.size() - start);
    stage_params.clear();
    for (std::size_t k = 0; k < n; ++k) {
      const auto i = held[start + k];
      stage_params.emplace_back(done[i].ref.id);
      stage_params.emplace_back(std::int64_t{done[i].stage});
      stage_params.emplace_back(names[i]);
      stage_params.emplace_back(done[i].started_at);
    }
    tx.exec_values(stage_rows_sql(n), stage_params);
  }
  // Dependents whose last dependency just succeeded become due in this transaction.
  std::vector<std::int64_t> succeeded;
  for (auto i : held)
    if (out[i].finished) succeeded.push_back(done[i].ref.id);
  dependencies_succeeded(tx, succeeded);
  return out;
}

bool complete_stage(transaction& tx, const claim_ref& ref, int stage, micros started_at) {
  const stage_done d{ref, stage, started_at};
  const auto r = complete_stages(tx, std::span<const stage_done>(&d, 1));
  if (!r[0].held) {
    const auto at = tx.query_optional<int>(
        "SELECT current_stage FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running' "
        "AND lease_expires_at >= casecore_now_us()",
        ref.id, ref.epoch);
    if (!at) throw_lost(ref);
    raise(errc::invalid_argument, "job " + std::to_string(ref.id) + " is at stage " + std::to_string(*at) + ", not " +
                                      std::to_string(stage));
  }
  return r[0].finished;
}

job_state fail(database& db, const claim_ref& ref, int stage, std::string_view error, const backoff& delays) {
  const std::string message(error.substr(0, 4000));
  return retry_on_new_sibling([&] {
    return db.write([&](transaction& tx) {
      auto row = lock_claim(tx, ref);
      if (!row) throw_lost(ref);
      const micros now = tx.now_us();
      job_state result = job_state::queued;
      if (auto newer = waiting_sibling(tx, *row)) {
        tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), last_error = $1, "
                "lease_owner = '', lease_expires_at = 0 WHERE id = $2",
                superseded_note(message, *newer), ref.id);
        result = job_state::cancelled;
      } else if (row->attempts >= row->max_attempts) {
        tx.exec("UPDATE casecore_jobs SET state = 'failed', finished_at = casecore_now_us(), last_error = $1, "
                "lease_owner = '', lease_expires_at = 0 WHERE id = $2",
                message, ref.id);
        result = job_state::failed;
      } else {
        tx.exec("UPDATE casecore_jobs SET state = CASE WHEN CAST($1 AS BIGINT) > 0 THEN 'scheduled' ELSE 'queued' END, "
                "run_at = casecore_now_us() + $1, last_error = $2, lease_owner = '', lease_expires_at = 0 WHERE id = $3",
                jittered_delay_us(delays, row->attempts), message, ref.id);
      }
      if (stage >= 0 && stage < static_cast<int>(row->stages.size()))
        upsert_stage(tx, ref.id, stage, row->stages[static_cast<std::size_t>(stage)], "failed", now, message);
      if (result != job_state::queued) dependency_ended(tx, ref.id, to_string(result));
      return result;
    });
  });
}

bool release(database& db, const claim_ref& ref) {
  return retry_on_new_sibling([&] {
    return db.write([&](transaction& tx) {
      auto row = lock_claim(tx, ref);
      if (!row) return false;
      if (auto newer = waiting_sibling(tx, *row)) {
        tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), last_error = $1, "
                "lease_owner = '', lease_expires_at = 0 WHERE id = $2",
                superseded_note("released", *newer), ref.id);
        dependency_ended(tx, ref.id, "cancelled");
      } else
        tx.exec("UPDATE casecore_jobs SET state = 'queued', attempts = attempts - 1, run_at = casecore_now_us(), "
                "lease_owner = '', lease_expires_at = 0 WHERE id = $1",
                ref.id);
      return true;
    });
  });
}

job_state snooze(database& db, const claim_ref& ref, std::chrono::milliseconds delay) {
  const auto us = checked_us(delay, "snooze delay");
  return retry_on_new_sibling([&] {
    return db.write([&](transaction& tx) {
      auto row = lock_claim(tx, ref); // fenced: token, running, unexpired
      if (!row) throw_lost(ref);
      if (auto newer = waiting_sibling(tx, *row)) {
        tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), last_error = $1, "
                "lease_owner = '', lease_expires_at = 0 WHERE id = $2",
                superseded_note("snoozed", *newer), ref.id);
        dependency_ended(tx, ref.id, "cancelled");
        return job_state::cancelled;
      }
      // The claim's attempt is given back: a snooze is not a failure. Due at once under a pause, it
      // waits as paused (a later one is promoted to paused or queued when due).
      static const std::string snooze_sql =
          sql({"UPDATE casecore_jobs AS j SET state = CASE WHEN CAST($1 AS BIGINT) > 0 THEN 'scheduled' ELSE ",
               due_state("j"),
               " END, attempts = j.attempts - 1, run_at = casecore_now_us() + $1, lease_owner = '', lease_expires_at = 0 "
               "WHERE j.id = $2"});
      tx.exec(snooze_sql, us, ref.id);
      return job_state::queued;
    });
  });
}

bool acknowledge_cancel(database& db, const claim_ref& ref) {
  return db.write([&](transaction& tx) {
    const bool ended = tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), lease_owner = '', "
                               "lease_expires_at = 0 WHERE id = $1 AND lease_epoch = $2 AND state = 'running' AND cancel_requested = 1 "
                               "AND lease_expires_at >= casecore_now_us()",
                               ref.id, ref.epoch)
                           .affected() > 0;
    if (ended) dependency_ended(tx, ref.id, "cancelled");
    return ended;
  });
}

std::size_t reclaim_expired(database& db, std::chrono::milliseconds overdue) {
  if (overdue.count() < 0) raise(errc::invalid_argument, "reclaim_expired: overdue must not be negative");
  const auto overdue_us = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(overdue).count());
  std::size_t total = 0;
  // Short transactions of at most 100 rows; locked rows are skipped (their holder is finishing them)
  // and a lock wait (a business transaction enqueueing a job of the same key) is bounded.
  const auto w = short_write(std::chrono::milliseconds(500), std::chrono::milliseconds(2000));
  for (int round = 0; round < 1000; ++round) {
    const auto n = retry_on_new_sibling([&] {
      return db.write([&](transaction& tx) {
        const auto rows = tx.exec(sqlt::reclaim(tx.dialect()), overdue_us);
        for (auto r : rows)
          if (const auto st = r.get<std::string>(1); st != "queued") dependency_ended(tx, r.get<std::int64_t>(0), st);
        return rows.size();
      }, w);
    });
    total += n;
    if (n < 100) break;
  }
  return total;
}

} // namespace jobs
} // namespace casecore
