#include <casecore/job_queue.hpp>
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
  };
}
} // namespace detail

namespace jobs {

namespace {

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

void check_owner(std::string_view owner) {
  if (owner.empty() || owner.size() > 200) raise(errc::invalid_argument, "worker owner must be 1..200 characters");
}

std::int64_t lease_us(std::chrono::milliseconds lease) {
  if (lease.count() <= 0) raise(errc::invalid_argument, "job lease must be positive");
  return lease.count() * 1000;
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

// A validated spec, ready to bind.
struct prepared_spec {
  const job_spec* spec;
  std::string stages;
  std::int64_t stage_count;
};

prepared_spec validate(const job_spec& s) {
  if (s.operation.empty() || s.operation.size() > 100) raise(errc::invalid_argument, "job operation must be 1..100 characters");
  if (s.subject.empty() || s.subject.size() > 200) raise(errc::invalid_argument, "job subject must be 1..200 characters");
  if (s.payload.size() > 1024 * 1024) raise(errc::invalid_argument, "job payload larger than 1 MiB");
  if (s.max_attempts < 1 || s.max_attempts > 1000) raise(errc::invalid_argument, "job max_attempts must be 1..1000");
  if (s.delay.count() < 0) raise(errc::invalid_argument, "job delay must not be negative");
  if (s.concurrency_key.size() > 200) raise(errc::invalid_argument, "job concurrency_key longer than 200 characters");
  return {&s, join_stages(s.stages), s.stages.empty() ? 1 : static_cast<std::int64_t>(s.stages.size())};
}

constexpr std::string_view job_columns =
    "id, operation, subject, payload, stages, current_stage, state, priority, run_at, attempts, max_attempts, "
    "concurrency_key, cancel_requested, lease_owner, lease_epoch, lease_expires_at, heartbeat_at, last_error, "
    "created_at, finished_at";

job_state parse_state(const std::string& s) {
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

constexpr std::string_view insert_head =
    "INSERT INTO casecore_jobs(operation, subject, payload, stages, priority, run_at, max_attempts, concurrency_key, "
    "stage_count, created_at) VALUES";

// Multi-row INSERT texts for 1..bulk_chunk rows, built once so each stays a cached prepared statement.
const std::string& bulk_insert_sql(std::size_t rows) {
  static const std::array<std::string, bulk_chunk + 1> texts = [] {
    std::array<std::string, bulk_chunk + 1> t;
    for (std::size_t n = 1; n <= bulk_chunk; ++n) {
      std::string s(insert_head);
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<int>(i) * bulk_columns;
        auto p = [&](int k) { return "$" + std::to_string(b + k); };
        s += (i ? ", (" : " (") + p(1) + ", " + p(2) + ", " + p(3) + ", " + p(4) + ", " + p(5) +
             ", casecore_now_us() + " + p(6) + ", " + p(7) + ", " + p(8) + ", " + p(9) + ", casecore_now_us())";
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
  params.emplace_back(std::int64_t{s.delay.count()} * 1000);
  params.emplace_back(std::int64_t{s.max_attempts});
  params.emplace_back(s.concurrency_key);
  params.emplace_back(p.stage_count);
}

std::optional<std::int64_t> find_active(transaction& tx, const job_spec& s) {
  return tx.query_optional<std::int64_t>(
      "SELECT id FROM casecore_jobs WHERE operation = $1 AND subject = $2 AND state IN ('queued', 'running')",
      s.operation, s.subject);
}

enqueued enqueue_one(transaction& tx, const prepared_spec& p) {
  // Insert, and on conflict read the existing row; the existing one may finish in between, so loop.
  for (int round = 0; round < 100; ++round) {
    std::vector<value> params;
    bind_spec(params, p);
    auto r = tx.exec_values(bulk_insert_sql(1), params);
    if (!r.empty()) return {r[0].get<std::int64_t>(0), true};
    if (auto id = find_active(tx, *p.spec)) return {*id, false};
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

const std::string& complete_sql(std::size_t n) {
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
          "heartbeat_at = casecore_now_us() WHERE state = 'running' AND (";
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

// The fenced row: stages, current_stage and attempts of a running claim, locked until commit.
struct fenced_row {
  std::vector<std::string> stages;
  int current_stage = 0;
  int attempts = 0;
  int max_attempts = 0;
  bool cancel_requested = false;
};

std::optional<fenced_row> lock_claim(transaction& tx, const claim_ref& ref) {
  const bool pg = tx.dialect() == dialect::postgresql;
  auto r = tx.exec(pg ? "SELECT stages, current_stage, attempts, max_attempts, cancel_requested FROM casecore_jobs "
                        "WHERE id = $1 AND lease_epoch = $2 AND state = 'running' FOR UPDATE"
                      : "SELECT stages, current_stage, attempts, max_attempts, cancel_requested FROM casecore_jobs "
                        "WHERE id = $1 AND lease_epoch = $2 AND state = 'running'",
                   ref.id, ref.epoch);
  if (r.empty()) return std::nullopt;
  return fenced_row{split_stages(r[0].get<std::string>(0)), r[0].get<int>(1), r[0].get<int>(2), r[0].get<int>(3),
                    r[0].get<bool>(4)};
}

[[noreturn]] void throw_lost(transaction&, const claim_ref& ref) {
  throw lease_lost("job " + std::to_string(ref.id) + " epoch " + std::to_string(ref.epoch) + " is no longer held");
}

const std::string& claim_fast_sql(dialect d) {
  static const std::string pg = sql(
      {"WITH c AS (SELECT id FROM casecore_jobs WHERE state = 'queued' AND run_at <= casecore_now_us() "
       "ORDER BY priority DESC, run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) "
       "UPDATE casecore_jobs AS j SET state = 'running', lease_owner = $2, lease_epoch = j.lease_epoch + 1, "
       "lease_expires_at = casecore_now_us() + $3, heartbeat_at = casecore_now_us(), attempts = j.attempts + 1, "
       "started_at = CASE WHEN j.started_at = 0 THEN casecore_now_us() ELSE j.started_at END "
       "FROM c WHERE j.id = c.id RETURNING j.id, j.operation, j.subject, j.payload, j.stages, j.current_stage, "
       "j.state, j.priority, j.run_at, j.attempts, j.max_attempts, j.concurrency_key, j.cancel_requested, "
       "j.lease_owner, j.lease_epoch, j.lease_expires_at, j.heartbeat_at, j.last_error, j.created_at, j.finished_at"});
  static const std::string lite = sql(
      {"UPDATE casecore_jobs SET state = 'running', lease_owner = $2, lease_epoch = lease_epoch + 1, "
       "lease_expires_at = casecore_now_us() + $3, heartbeat_at = casecore_now_us(), attempts = attempts + 1, "
       "started_at = CASE WHEN started_at = 0 THEN casecore_now_us() ELSE started_at END "
       "WHERE id IN (SELECT id FROM casecore_jobs WHERE state = 'queued' AND run_at <= casecore_now_us() "
       "ORDER BY priority DESC, run_at, id LIMIT $1) RETURNING ",
       job_columns});
  return d == dialect::postgresql ? pg : lite;
}

const std::string& claim_one_sql() {
  static const std::string s = sql(
      {"UPDATE casecore_jobs SET state = 'running', lease_owner = $2, lease_epoch = lease_epoch + 1, "
       "lease_expires_at = casecore_now_us() + $3, heartbeat_at = casecore_now_us(), attempts = attempts + 1, "
       "started_at = CASE WHEN started_at = 0 THEN casecore_now_us() ELSE started_at END "
       "WHERE id = $1 AND state = 'queued' RETURNING ",
       job_columns});
  return s;
}

// Claims that honour limits: count running rows in the database while no other limited claim can
// run (advisory transaction lock on PostgreSQL, the single writer on SQLite), then pick candidates
// whose key still has room.
std::vector<job> claim_limited(transaction& tx, const claim_options& o) {
  const bool pg = tx.dialect() == dialect::postgresql;
  if (pg) tx.exec("SELECT pg_advisory_xact_lock($1)", advisory_limit_key);
  std::int64_t room = static_cast<std::int64_t>(o.batch);
  if (o.max_running > 0) {
    const auto running = tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE state = 'running'");
    room = std::min<std::int64_t>(room, o.max_running - running);
  }
  std::vector<job> out;
  if (room <= 0) return out;
  const std::int64_t window = room * 4 + 16;
  const std::int64_t per_key = o.max_per_key > 0 ? o.max_per_key : std::numeric_limits<int>::max();
  auto candidates = tx.exec(
      pg ? "SELECT id, concurrency_key FROM casecore_jobs WHERE state = 'queued' AND run_at <= casecore_now_us() "
           "AND (concurrency_key = '' OR concurrency_key NOT IN (SELECT concurrency_key FROM casecore_jobs "
           "WHERE state = 'running' AND concurrency_key <> '' GROUP BY concurrency_key HAVING count(*) >= $2)) "
           "ORDER BY priority DESC, run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"
         : "SELECT id, concurrency_key FROM casecore_jobs WHERE state = 'queued' AND run_at <= casecore_now_us() "
           "AND (concurrency_key = '' OR concurrency_key NOT IN (SELECT concurrency_key FROM casecore_jobs "
           "WHERE state = 'running' AND concurrency_key <> '' GROUP BY concurrency_key HAVING count(*) >= $2)) "
           "ORDER BY priority DESC, run_at, id LIMIT $1",
      window, per_key);
  std::map<std::string, std::int64_t> running_per_key;
  for (auto c : candidates) {
    if (static_cast<std::int64_t>(out.size()) >= room) break;
    const auto key = c.get<std::string>(1);
    if (!key.empty()) {
      auto it = running_per_key.find(key);
      if (it == running_per_key.end())
        it = running_per_key
                 .emplace(key, tx.query_one<std::int64_t>(
                                   "SELECT count(*) FROM casecore_jobs WHERE state = 'running' AND concurrency_key = $1", key))
                 .first;
      if (it->second >= per_key) continue;
      ++it->second;
    }
    auto r = tx.exec(claim_one_sql(), c.get<std::int64_t>(0), o.owner, lease_us(o.lease));
    if (!r.empty()) out.push_back(to_job(r[0]));
  }
  return out;
}

} // namespace

std::optional<job_state> state_from_string(std::string_view name) noexcept {
  for (auto st : {job_state::queued, job_state::running, job_state::succeeded, job_state::failed, job_state::cancelled})
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
  // Insert in (operation, subject) order so two concurrent bulk enqueues wait on each other's keys in
  // the same order (no deadlock on PostgreSQL).
  std::vector<std::size_t> order(specs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::tie(specs[a].operation, specs[a].subject) < std::tie(specs[b].operation, specs[b].subject);
  });
  std::vector<enqueued> out(specs.size());
  std::vector<bool> done(specs.size(), false);
  std::map<std::pair<std::string, std::string>, std::int64_t> created;
  std::vector<value> params;
  for (std::size_t start = 0; start < order.size(); start += bulk_chunk) {
    const auto n = std::min(bulk_chunk, order.size() - start);
    params.clear();
    for (std::size_t k = 0; k < n; ++k) bind_spec(params, prepared[order[start + k]]);
    for (auto r : tx.exec_values(bulk_insert_sql(n), params))
      created.emplace(std::make_pair(r.get<std::string>(1), r.get<std::string>(2)), r.get<std::int64_t>(0));
  }
  std::set<std::int64_t> reported;
  for (auto i : order) {
    const auto it = created.find({specs[i].operation, specs[i].subject});
    if (it == created.end()) continue;
    out[i] = {it->second, reported.insert(it->second).second}; // later duplicates of one batch: created=false
    done[i] = true;
  }
  for (auto i : order)
    if (!done[i]) out[i] = enqueue_one(tx, prepared[i]);
  return out;
}

std::vector<job> claim(database& db, const claim_options& o) {
  check_owner(o.owner);
  const auto us = lease_us(o.lease);
  if (o.batch == 0 || o.batch > 1000) raise(errc::invalid_argument, "claim batch must be 1..1000");
  if (o.max_running < 0 || o.max_per_key < 0) raise(errc::invalid_argument, "claim limits must not be negative");
  auto jobs = db.write([&](transaction& tx) {
    if (o.max_running > 0 || o.max_per_key > 0) return claim_limited(tx, o);
    std::vector<job> out;
    for (auto r : tx.exec(claim_fast_sql(tx.dialect()), static_cast<std::int64_t>(o.batch), o.owner, us))
      out.push_back(to_job(r));
    return out;
  });
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return std::tuple(-a.priority, a.run_at, a.id) < std::tuple(-b.priority, b.run_at, b.id);
  });
  return jobs;
}

void check(transaction& tx, const claim_ref& ref) {
  // Locks the job row until the guarded transaction ends, so a reclaim cannot slip in before commit.
  const bool pg = tx.dialect() == dialect::postgresql;
  const auto ok = tx.query_optional<std::int64_t>(
      pg ? "SELECT 1 FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running' FOR UPDATE"
         : "SELECT 1 FROM casecore_jobs WHERE id = $1 AND lease_epoch = $2 AND state = 'running'",
      ref.id, ref.epoch);
  if (!ok) throw_lost(tx, ref);
}

std::map<std::int64_t, bool> heartbeat(database& db, std::span<const claim_ref> refs, std::chrono::milliseconds lease,
                                       std::vector<std::int64_t>* lost) {
  const auto us = lease_us(lease);
  std::vector<std::int64_t> gone;
  auto alive = db.write([&](transaction& tx) {
    gone.clear();
    std::map<std::int64_t, bool> out;
    for (const auto& ref : refs) {
      auto r = tx.exec("UPDATE casecore_jobs SET lease_expires_at = casecore_now_us() + $1, heartbeat_at = casecore_now_us() "
                       "WHERE id = $2 AND lease_epoch = $3 AND state = 'running' RETURNING cancel_requested",
                       us, ref.id, ref.epoch);
      if (r.empty()) gone.push_back(ref.id);
      else out[ref.id] = r[0].get<bool>(0);
    }
    return out;
  });
  if (lost) *lost = std::move(gone);
  return alive;
}

std::vector<stage_outcome> complete_stages(transaction& tx, std::span<const stage_done> done) {
  std::vector<stage_outcome> out(done.size());
  std::map<std::int64_t, std::size_t> index;
  for (std::size_t i = 0; i < done.size(); ++i) index[done[i].ref.id] = i;
  if (index.size() != done.size()) raise(errc::invalid_argument, "complete_stages: a job appears twice");
  std::vector<value> params;
  std::vector<value> stage_params;
  for (std::size_t start = 0; start < done.size(); start += complete_chunk) {
    const auto n = std::min(complete_chunk, done.size() - start);
    params.clear();
    for (std::size_t k = 0; k < n; ++k) {
      const auto& d = done[start + k];
      params.emplace_back(d.ref.id);
      params.emplace_back(d.ref.epoch);
      params.emplace_back(std::int64_t{d.stage});
    }
    // One statement advances every claim of the chunk that is still held at the named stage.
    const auto rows = tx.exec_values(complete_sql(n), params);
    stage_params.clear();
    for (auto r : rows) {
      const auto i = index.at(r.get<std::int64_t>(0));
      const auto names = split_stages(r.get<std::string>(1));
      out[i] = {true, r.get<std::string>(2) == "succeeded", r.get<bool>(3)};
      const auto pos = static_cast<std::size_t>(done[i].stage);
      stage_params.emplace_back(done[i].ref.id);
      stage_params.emplace_back(std::int64_t{done[i].stage});
      stage_params.emplace_back(pos < names.size() ? names[pos] : std::string("?"));
      stage_params.emplace_back(done[i].started_at);
    }
    if (!rows.empty()) tx.exec_values(stage_rows_sql(rows.size()), stage_params);
  }
  return out;
}

bool complete_stage(transaction& tx, const claim_ref& ref, int stage, micros started_at) {
  const stage_done d{ref, stage, started_at};
  const auto r = complete_stages(tx, std::span<const stage_done>(&d, 1));
  if (!r[0].held) {
    auto row = lock_claim(tx, ref);
    if (!row) throw_lost(tx, ref);
    raise(errc::invalid_argument, "job " + std::to_string(ref.id) + " is at stage " + std::to_string(row->current_stage) +
                                      ", not " + std::to_string(stage));
  }
  return r[0].finished;
}

job_state fail(database& db, const claim_ref& ref, int stage, std::string_view error, const backoff& delays) {
  const std::string message(error.substr(0, 4000));
  return db.write([&](transaction& tx) {
    auto row = lock_claim(tx, ref);
    if (!row) throw_lost(tx, ref);
    const micros now = tx.now_us();
    const bool spent = row->attempts >= row->max_attempts;
    if (spent)
      tx.exec("UPDATE casecore_jobs SET state = 'failed', finished_at = casecore_now_us(), last_error = $1, "
              "lease_owner = '', lease_expires_at = 0 WHERE id = $2",
              message, ref.id);
    else
      tx.exec("UPDATE casecore_jobs SET state = 'queued', run_at = casecore_now_us() + $1, last_error = $2, "
              "lease_owner = '', lease_expires_at = 0 WHERE id = $3",
              jittered_delay_us(delays, row->attempts), message, ref.id);
    if (stage >= 0 && stage < static_cast<int>(row->stages.size()))
      upsert_stage(tx, ref.id, stage, row->stages[static_cast<std::size_t>(stage)], "failed", now, message);
    return spent ? job_state::failed : job_state::queued;
  });
}

bool release(database& db, const claim_ref& ref) {
  return db.write([&](transaction& tx) {
    return tx.exec("UPDATE casecore_jobs SET state = 'queued', attempts = attempts - 1, run_at = casecore_now_us(), "
                   "lease_owner = '', lease_expires_at = 0 WHERE id = $1 AND lease_epoch = $2 AND state = 'running'",
                   ref.id, ref.epoch)
               .affected() > 0;
  });
}

bool acknowledge_cancel(database& db, const claim_ref& ref) {
  return db.write([&](transaction& tx) {
    return tx.exec("UPDATE casecore_jobs SET state = 'cancelled', finished_at = casecore_now_us(), lease_owner = '', "
                   "lease_expires_at = 0 WHERE id = $1 AND lease_epoch = $2 AND state = 'running' AND cancel_requested = 1",
                   ref.id, ref.epoch)
               .affected() > 0;
  });
}

bool cancel(database& db, std::int64_t id) {
  return db.write([&](transaction& tx) {
    if (tx.exec("UPDATE casecore_jobs SET state = 'cancelled', cancel_requested = 1, finished_at = casecore_now_us() "
                "WHERE id = $1 AND state = 'queued'",
                id)
            .affected() > 0)
      return true;
    return tx.exec("UPDATE casecore_jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'", id).affected() > 0;
  });
}

job retry(database& db, std::int64_t id) {
  db.write([&](transaction& tx) {
    auto r = tx.exec(tx.dialect() == dialect::postgresql
                         ? "SELECT state, operation, subject FROM casecore_jobs WHERE id = $1 FOR UPDATE"
                         : "SELECT state, operation, subject FROM casecore_jobs WHERE id = $1",
                     id);
    if (r.empty()) throw not_found("job " + std::to_string(id) + " does not exist");
    const auto state = r[0].get<std::string>(0);
    if (state != "failed" && state != "cancelled")
      throw invalid_transition("job " + std::to_string(id) + " is " + state + ": only failed or cancelled jobs can be retried");
    // The partial unique index would refuse the update anyway; checking first gives the operator the other job's id.
    if (auto other = tx.query_optional<std::int64_t>(
            "SELECT id FROM casecore_jobs WHERE operation = $1 AND subject = $2 AND state IN ('queued', 'running')",
            r[0].get<std::string>(1), r[0].get<std::string>(2)))
      throw already_exists("job " + std::to_string(*other) + " is already active for the same operation and subject");
    tx.exec("UPDATE casecore_jobs SET state = 'queued', attempts = 0, run_at = casecore_now_us(), finished_at = 0, "
            "cancel_requested = 0, lease_owner = '', lease_expires_at = 0 WHERE id = $1",
            id);
  });
  return *get(db, id);
}

std::size_t reclaim_expired(database& db) {
  return static_cast<std::size_t>(db.write([](transaction& tx) {
    return tx.exec(
        "UPDATE casecore_jobs SET "
        "state = CASE WHEN cancel_requested = 1 THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
        "finished_at = CASE WHEN cancel_requested = 1 OR attempts >= max_attempts THEN casecore_now_us() ELSE 0 END, "
        "last_error = 'lease expired: worker lost', lease_owner = '', lease_expires_at = 0, run_at = casecore_now_us() "
        "WHERE state = 'running' AND lease_expires_at < casecore_now_us()")
        .affected();
  }));
}

std::size_t prune(database& db, std::chrono::milliseconds older_than) {
  if (older_than.count() < 0) raise(errc::invalid_argument, "prune age must not be negative");
  std::size_t total = 0;
  for (;;) {
    // Small batches keep each transaction (and its locks) short on a table with millions of rows.
    const auto n = db.write([&](transaction& tx) {
      return tx.exec("DELETE FROM casecore_jobs WHERE id IN (SELECT id FROM casecore_jobs "
                     "WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < casecore_now_us() - $1 LIMIT 5000) "
                     "RETURNING id",
                     older_than.count() * 1000)
          .size(); // not affected(): SQLite counts the cascaded stage rows too
    });
    total += static_cast<std::size_t>(n);
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
  if (limit < 1 || limit > 10000) raise(errc::invalid_argument, "job list limit must be 1..10000");
  return db.read([&](transaction& tx) {
    static const std::string q =
        sql({"SELECT ", job_columns, " FROM casecore_jobs WHERE $1 = '' OR state = $1 ORDER BY id DESC LIMIT $2"});
    std::vector<job> out;
    for (auto r : tx.exec(q, state ? to_string(*state) : std::string_view{}, static_cast<std::int64_t>(limit)))
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
    for (auto r : tx.exec("SELECT state, count(*) FROM casecore_jobs GROUP BY state"))
      s.by_state[r.get<std::string>(0)] = r.get<std::int64_t>(1);
    for (auto r : tx.exec("SELECT stages, current_stage, count(*) FROM casecore_jobs "
                          "WHERE state IN ('queued', 'running') GROUP BY stages, current_stage")) {
      const auto names = split_stages(r.get<std::string>(0));
      const auto at = r.get<std::size_t>(1);
      s.active_by_stage[at < names.size() ? names[at] : "done"] += r.get<std::int64_t>(2);
    }
    auto ready = tx.exec("SELECT count(*), min(run_at), casecore_now_us() FROM casecore_jobs "
                         "WHERE state = 'queued' AND run_at <= casecore_now_us()");
    s.ready = ready[0].get<std::int64_t>(0);
    if (s.ready > 0) s.oldest_ready_age = ready[0].get<micros>(2) - ready[0].get<micros>(1);
    for (auto r : tx.exec("SELECT id FROM casecore_jobs WHERE state = 'running' AND lease_expires_at < casecore_now_us() "
                          "ORDER BY id"))
      s.stuck.push_back(r.get<std::int64_t>(0));
    return s;
  });
}

} // namespace jobs
} // namespace casecore
