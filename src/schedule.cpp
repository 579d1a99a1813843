// Periodic jobs (casecore/schedule.hpp): schedule rows, the tick key and the scheduler step.
#include <casecore/cron.hpp>
#include <casecore/detail/step.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/migration.hpp>
#include <casecore/schedule.hpp>
#include "job_queue_internal.hpp"

#include <ctime>

namespace casecore {

namespace detail {
std::vector<migration> schedule_migrations() {
  return {
      // next_at is indexed so that a step finds due schedules without reading the others; the tick
      // key (schedule, tick_at) is what makes a tick's job unique across processes and hosts.
      {"casecore.schedules", 1, "periodic job schedules and their tick keys",
       "CREATE TABLE casecore_schedules("
       " name TEXT PRIMARY KEY, cron TEXT NOT NULL, zone TEXT NOT NULL, every_ms BIGINT NOT NULL,"
       " offset_ms BIGINT NOT NULL, policy TEXT NOT NULL, catch_up_limit INTEGER NOT NULL, grace_ms BIGINT NOT NULL,"
       " operation TEXT NOT NULL, subject TEXT NOT NULL, payload TEXT NOT NULL, stages TEXT NOT NULL,"
       " priority INTEGER NOT NULL, max_attempts INTEGER NOT NULL, concurrency_key TEXT NOT NULL, delay_ms BIGINT NOT NULL,"
       " next_at BIGINT NOT NULL, cursor_at BIGINT NOT NULL, last_tick_at BIGINT NOT NULL DEFAULT 0,"
       " last_job_id BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
       "CREATE INDEX casecore_schedules_next ON casecore_schedules(next_at);"
       "CREATE TABLE casecore_schedule_ticks("
       " schedule TEXT NOT NULL, tick_at BIGINT NOT NULL, job_id BIGINT NOT NULL, enqueued_at BIGINT NOT NULL,"
       " PRIMARY KEY(schedule, tick_at))",
       "", ""},
  };
}
} // namespace detail

namespace schedules {

namespace {

constexpr micros us_per_ms = 1000;
constexpr micros max_late = micros{366} * 24 * 3600 * 1000000; // ticks older than this are never enqueued
constexpr std::int64_t history = 100;                           // tick rows kept per schedule
constexpr std::size_t due_batch = 100;                          // schedules per due query
constexpr micros recheck = micros{3600} * 1000000;              // an unusable row is looked at hourly

constexpr std::string_view columns =
    "name, cron, zone, every_ms, offset_ms, policy, catch_up_limit, grace_ms, operation, subject, payload, stages, "
    "priority, max_attempts, concurrency_key, delay_ms, next_at, cursor_at, last_tick_at, last_job_id, created_at, "
    "updated_at";

std::string join(const std::vector<std::string>& stages) {
  std::string out;
  for (const auto& s : stages) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::optional<catch_up> policy_from(std::string_view s) {
  if (s == "skip") return catch_up::skip;
  if (s == "latest") return catch_up::latest;
  if (s == "bounded") return catch_up::bounded;
  return std::nullopt;
}

// A validated schedule and how to compute its ticks.
struct plan {
  schedule s;
  std::optional<casecore::cron> c;

  // The first tick after `after`.
  micros next_after(micros after) const {
    if (c) return c->next_after(after);
    const micros p = s.every.count() * us_per_ms;
    const micros o = s.offset.count() * us_per_ms;
    // floor((after - o) / p) + 1, with floor division for instants before the epoch
    micros k = (after - o) / p;
    if ((after - o) % p != 0 && (after - o) < 0) --k;
    return o + (k + 1) * p;
  }

  // The newest `n` ticks in (after, until], oldest first.
  std::vector<micros> between(micros after, micros until, std::size_t n) const {
    if (c) return c->between(after, until, n);
    std::vector<micros> out;
    if (until <= after || n == 0) return out;
    const micros p = s.every.count() * us_per_ms;
    const micros first = next_after(after);
    if (first > until) return out;
    const micros last = first + ((until - first) / p) * p;
    const auto count = static_cast<std::size_t>((last - first) / p + 1);
    for (auto i = count > n ? count - n : 0; i < count; ++i) out.push_back(first + static_cast<micros>(i) * p);
    return out;
  }
};

plan validate(const schedule& in) {
  plan p{in, std::nullopt};
  auto& s = p.s;
  detail::check_printable(s.name, "schedule name", 100);
  const bool has_cron = !s.cron.empty();
  const bool has_every = s.every.count() != 0;
  if (has_cron == has_every)
    raise(errc::invalid_argument, "schedule '" + s.name + "' needs exactly one of a cron expression and an interval (every)");
  if (has_cron) {
    p.c.emplace(s.cron, s.zone); // invalid_argument for bad text or zone
    s.cron = p.c->expression();
  } else {
    check_time_zone(s.zone);
    constexpr std::int64_t max_ms = std::int64_t{366} * 24 * 3600 * 1000;
    if (s.every.count() < 1000 || s.every.count() > max_ms || s.every.count() % 1000 != 0)
      raise(errc::invalid_argument, "schedule '" + s.name + "': every must be whole seconds, 1 s .. 366 days");
    if (s.offset.count() < 0 || s.offset >= s.every || s.offset.count() % 1000 != 0)
      raise(errc::invalid_argument, "schedule '" + s.name + "': offset must be whole seconds, 0 <= offset < every");
  }
  if (s.catch_up_limit < 1 || s.catch_up_limit > 1000)
    raise(errc::invalid_argument, "schedule '" + s.name + "': catch_up_limit must be 1..1000");
  if (s.grace.count() < 0 || s.grace.count() * us_per_ms > max_late)
    raise(errc::invalid_argument, "schedule '" + s.name + "': grace must be 0 .. 366 days");
  if (to_string(s.policy).empty()) raise(errc::invalid_argument, "schedule '" + s.name + "': unknown catch-up policy");
  if (s.job.subject.empty()) s.job.subject = "schedule:" + s.name;
  detail::check_printable(s.job.subject, "schedule job subject", 179); // + "@YYYY-MM-DDTHH:MM:SSZ" <= 200
  jobs::internal::check_spec(s.job);                                     // operation, payload, stages ...
  return p;
}

schedule_info to_info(const row_ref& r) {
  schedule_info i;
  auto& s = i.spec;
  s.name = r.get<std::string>(0);
  s.cron = r.get<std::string>(1);
  s.zone = r.get<std::string>(2);
  s.every = std::chrono::milliseconds(r.get<std::int64_t>(3));
  s.offset = std::chrono::milliseconds(r.get<std::int64_t>(4));
  s.policy = policy_from(r.get<std::string>(5)).value_or(catch_up::latest);
  s.catch_up_limit = r.get<int>(6);
  s.grace = std::chrono::milliseconds(r.get<std::int64_t>(7));
  s.job.operation = r.get<std::string>(8);
  s.job.subject = r.get<std::string>(9);
  s.job.payload = r.get<std::string>(10);
  const auto stages = r.get<std::string>(11);
  if (!stages.empty()) s.job.stages = jobs::internal::split_stages(stages);
  s.job.priority = r.get<int>(12);
  s.job.max_attempts = r.get<int>(13);
  s.job.concurrency_key = r.get<std::string>(14);
  s.job.delay = std::chrono::milliseconds(r.get<std::int64_t>(15));
  i.next_at = r.get<micros>(16);
  i.cursor_at = r.get<micros>(17);
  i.last_tick_at = r.get<micros>(18);
  i.last_job_id = r.get<std::int64_t>(19);
  i.created_at = r.get<micros>(20);
  i.updated_at = r.get<micros>(21);
  return i;
}

std::string select_sql(std::string_view tail) { return "SELECT " + std::string(columns) + " FROM casecore_schedules " + std::string(tail); }

// One schedule's step, in the caller's write transaction: lock the row, handle (cursor, now].
std::vector<tick> step_one(transaction& tx, const std::string& name, std::optional<micros> given_now) {
  std::vector<tick> out;
  // SKIP LOCKED: a schedule being stepped (or upserted) right now is left to that transaction; its
  // ticks up to the holder's `now` are handled there, later ones by the next step (the cursor moves
  // only past what a step handled). A step therefore never waits for a row lock, so the worker's
  // maintenance thread is never held up behind someone else's long transaction.
  const auto rows = tx.exec(select_sql("WHERE name = $1") + std::string(tx.sql().for_update_skip_locked), name);
  if (rows.empty()) return out; // locked by another step, or removed meanwhile
  auto info = to_info(rows[0]);
  // Read the clock after the lock, so the window (cursor, now] is judged at the time it is handled.
  const micros now = given_now ? *given_now : tx.now_us();
  if (info.next_at > now) return out; // another process handled it (or it is not due)
  plan p;
  try {
    p = validate(info.spec);
  } catch (const error&) {
    // A row the current code cannot use (its zone gone from tzdata, a row written by other means):
    // its ticks wait in (cursor, now]; look at it again in an hour instead of on every step, so
    // such rows never crowd valid ones out of the due batch.
    tx.exec("UPDATE casecore_schedules SET next_at = $2 WHERE name = $1", name, now + recheck);
    return out;
  }
  const micros from = std::max(info.cursor_at, now - max_late);
  std::vector<micros> ticks;
  switch (p.s.policy) {
  case catch_up::latest: ticks = p.between(from, now, 1); break;
  case catch_up::bounded: ticks = p.between(from, now, static_cast<std::size_t>(p.s.catch_up_limit)); break;
  case catch_up::skip: ticks = p.between(std::max(from, now - p.s.grace.count() * us_per_ms - 1), now, 1); break;
  }
  micros last_tick = info.last_tick_at;
  std::int64_t last_job = info.last_job_id;
  for (const micros at : ticks) {
    // The tick key first: a tick whose row exists already is never enqueued again.
    const auto claimed = tx.exec("INSERT INTO casecore_schedule_ticks(schedule, tick_at, job_id, enqueued_at) "
                                 "VALUES ($1, $2, 0, casecore_now_us()) ON CONFLICT DO NOTHING RETURNING tick_at",
                                 name, at);
    if (claimed.empty()) continue;
    detail::step("schedules.tick_claimed");
    auto spec = p.s.job;
    spec.subject = tick_subject(p.s.job.subject, at);
    const auto job = jobs::enqueue(tx, spec);
    tx.exec("UPDATE casecore_schedule_ticks SET job_id = $3 WHERE schedule = $1 AND tick_at = $2", name, at, job.id);
    out.push_back({name, at, job.id});
    if (at > last_tick) {
      last_tick = at;
      last_job = job.id;
    }
  }
  const micros cursor = std::max(info.cursor_at, now);
  tx.exec("UPDATE casecore_schedules SET cursor_at = $2, next_at = $3, last_tick_at = $4, last_job_id = $5 WHERE name = $1",
          name, cursor, p.next_after(cursor), last_tick, last_job);
  if (!out.empty()) {
    // History only: the cursor (locked above) is what keeps an old tick from coming back.
    tx.exec("DELETE FROM casecore_schedule_ticks WHERE schedule = $1 AND tick_at < (SELECT tick_at FROM "
            "casecore_schedule_ticks WHERE schedule = $1 ORDER BY tick_at DESC LIMIT 1 OFFSET $2)",
            name, history - 1);
  }
  return out;
}

} // namespace

std::string_view to_string(catch_up c) noexcept {
  switch (c) {
  case catch_up::skip: return "skip";
  case catch_up::latest: return "latest";
  case catch_up::bounded: return "bounded";
  }
  return {};
}

std::string tick_subject(std::string_view subject, micros at) {
  const auto secs = static_cast<std::time_t>(at >= 0 ? at / 1000000 : (at - 999999) / 1000000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(subject) + "@" + buf;
}

bool upsert(transaction& tx, const schedule& s, std::optional<micros> given_now) {
  const auto p = validate(s);
  if (!tx.writable()) raise(errc::invalid_argument, "schedules::upsert needs a write transaction");
  const micros now = given_now ? *given_now : tx.now_us();
  const auto& j = p.s.job;
  const auto every = p.s.every.count();
  const auto offset = p.s.offset.count();
  const auto policy = to_string(p.s.policy);
  const auto stages = join(j.stages);
  for (;;) {
    const auto cursor = tx.query_optional<micros>(
        "SELECT cursor_at FROM casecore_schedules WHERE name = $1" + std::string(tx.sql().for_update), p.s.name);
    if (cursor) {
      tx.exec("UPDATE casecore_schedules SET cron = $2, zone = $3, every_ms = $4, offset_ms = $5, policy = $6, "
              "catch_up_limit = $7, grace_ms = $8, operation = $9, subject = $10, payload = $11, stages = $12, "
              "priority = $13, max_attempts = $14, concurrency_key = $15, delay_ms = $16, next_at = $17, updated_at = $18 "
              "WHERE name = $1",
              p.s.name, p.s.cron, p.s.zone, every, offset, policy, p.s.catch_up_limit, p.s.grace.count(), j.operation,
              j.subject, j.payload, stages, j.priority, j.max_attempts, j.concurrency_key, j.delay.count(),
              p.next_after(*cursor), now);
      return false;
    }
    const auto inserted = tx.exec(
        "INSERT INTO casecore_schedules(" + std::string(columns) +
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, 0, $19, $19) "
            "ON CONFLICT DO NOTHING RETURNING name",
        p.s.name, p.s.cron, p.s.zone, every, offset, policy, p.s.catch_up_limit, p.s.grace.count(), j.operation, j.subject,
        j.payload, stages, j.priority, j.max_attempts, j.concurrency_key, j.delay.count(), p.next_after(now), now, now);
    if (!inserted.empty()) return true;
    // A concurrent upsert created it first: update that row instead.
  }
}

bool upsert(database& db, const schedule& s, std::optional<micros> now) {
  validate(s); // bad input fails before any transaction
  return db.write([&](transaction& tx) { return upsert(tx, s, now); });
}

bool remove(database& db, std::string_view name) {
  detail::check_printable(name, "schedule name", 100);
  return db.write([&](transaction& tx) {
    tx.exec("DELETE FROM casecore_schedule_ticks WHERE schedule = $1", name);
    return !tx.exec("DELETE FROM casecore_schedules WHERE name = $1 RETURNING name", name).empty();
  });
}

std::optional<schedule_info> get(database& db, std::string_view name) {
  detail::check_printable(name, "schedule name", 100);
  return db.read([&](transaction& tx) -> std::optional<schedule_info> {
    const auto rows = tx.exec(select_sql("WHERE name = $1"), name);
    if (rows.empty()) return std::nullopt;
    return to_info(rows[0]);
  });
}

std::vector<schedule_info> list(database& db) {
  return db.read([&](transaction& tx) {
    std::vector<schedule_info> out;
    const auto rows = tx.exec(select_sql("ORDER BY name"));
    for (std::size_t i = 0; i < rows.size(); ++i) out.push_back(to_info(rows[i]));
    return out;
  });
}

std::vector<tick> recent_ticks(database& db, std::string_view name, std::size_t limit) {
  detail::check_printable(name, "schedule name", 100);
  return db.read([&](transaction& tx) {
    std::vector<tick> out;
    const auto rows = tx.exec("SELECT tick_at, job_id FROM casecore_schedule_ticks WHERE schedule = $1 "
                              "ORDER BY tick_at DESC LIMIT $2",
                              name, static_cast<std::int64_t>(std::min<std::size_t>(limit, 1000)));
    for (std::size_t i = 0; i < rows.size(); ++i)
      out.push_back({std::string(name), rows[i].get<micros>(0), rows[i].get<std::int64_t>(1)});
    return out;
  });
}

std::vector<tick> run_due(database& db, std::optional<micros> now) {
  // Which schedules are due: one probe of the next_at index (cheap whatever the number of schedules).
  const auto names = db.read([&](transaction& tx) {
    std::vector<std::string> out;
    const auto rows = now ? tx.exec("SELECT name FROM casecore_schedules WHERE next_at <= $1 ORDER BY next_at, name LIMIT $2",
                                    *now, static_cast<std::int64_t>(due_batch))
                          : tx.exec("SELECT name FROM casecore_schedules WHERE next_at <= casecore_now_us() "
                                    "ORDER BY next_at, name LIMIT $1",
                                    static_cast<std::int64_t>(due_batch));
    for (std::size_t i = 0; i < rows.size(); ++i) out.push_back(rows[i].get<std::string>(0));
    return out;
  });
  std::vector<tick> out;
  for (const auto& name : names) {
    // One short transaction per schedule: a slow or failing one never holds up the others' locks.
    auto done = db.write([&](transaction& tx) { return step_one(tx, name, now); });
    out.insert(out.end(), done.begin(), done.end());
  }
  return out;
}

} // namespace schedules

} // namespace casecore
