// casecore/schedule.hpp — periodic jobs: cron (with a time zone) or fixed-interval schedules that
// enqueue one job per tick, exactly once across every process and host.
//
// Concept: a schedule (name, cron expression + IANA zone, or an interval) is a row in the database
// with a job template. run_due(db) — run by any process, as often as it likes (the worker does it
// every worker_options::schedules) — enqueues a job for each due tick, per the schedule's catch-up
// policy, and moves the schedule's cursor to now.
// Guarantee (both backends, any number of processes and hosts calling run_due at once, behind a
// transaction pooler too): at most one job per (schedule, tick), and no tick that the policy keeps is
// lost. Two things hold it, both in the database, neither in a leader's memory:
//   * the tick key: casecore_schedule_ticks has PRIMARY KEY (schedule, tick_at), and the tick row is
//     inserted (ON CONFLICT DO NOTHING) in the SAME transaction that enqueues the tick's job. A job
//     exists only if its tick row committed, and a second insert of the tick finds the key and
//     enqueues nothing; a rolled-back step leaves neither.
//   * the cursor: each step locks the schedule row (PostgreSQL FOR UPDATE SKIP LOCKED; SQLite's single
//     writer), reads the cursor (every tick at or before it was handled: enqueued or skipped by the
//     policy), handles the ticks in (cursor, now] and sets cursor = max(cursor, now) in that
//     transaction. Steps of one schedule therefore cover disjoint, contiguous windows: none is handled
//     twice or skipped. A step that finds the row locked leaves it to the holder and the next step
//     (never waits for a lock); a tick is at worst delayed by one step period, never lost.
// "now" is the database clock (one clock for every host); tests pass their own `now` instead.
// Ticks: cron ticks follow casecore/cron.hpp (a tick in a skipped local hour fires once at the end
// of the gap; a repeated local hour fires once, at its first occurrence). Interval ticks are
// offset + k * every since the Unix epoch (UTC), so every host computes the same instants.
// Catch-up after downtime (ticks in (cursor, now] more than `grace` old are "missed"):
//   * catch_up::latest (default): enqueue the newest due tick only, however late; older ones are skipped.
//   * catch_up::bounded: enqueue the newest `catch_up_limit` due ticks, oldest first; older are skipped.
//   * catch_up::skip: enqueue the newest due tick only if it is at most `grace` old; otherwise nothing.
//   Whatever the policy, ticks more than 366 days before now are never enqueued (bounds a step's work).
// Jobs: each tick's job is the schedule's job template with subject "<subject>@<tick, UTC ISO 8601>"
// (subject defaults to "schedule:<name>"), so two ticks are two jobs and the job keys of
// job_queue.hpp never merge them; the job is due at once (database clock). The newest 100 tick rows
// per schedule are kept as history (recent_ticks); the cursor, not the history, stops re-enqueueing.
// Step for tests (casecore/testing/steps.hpp): "schedules.tick_claimed" — a step inserted a tick row
// and is about to enqueue its job, in the same open transaction.
// Failure modes: invalid_argument (nothing written) for a bad name, cron text, zone, interval,
// policy bound or job template; not_found from nothing (remove() returns false, get() nullopt). A
// stored row the step cannot use (its zone removed from the OS tzdata) is skipped and looked at
// again hourly; its ticks wait under its catch-up policy. run_due handles at most 100 due schedules
// per call (the most overdue first); the next call takes the rest.
// Thread-safety: every function is thread-safe.
//
//   schedules::upsert(db, {.name = "nightly-report", .cron = "30 2 * * *", .zone = "Europe/Berlin",
//                          .job = {.operation = "report"}});
//   schedules::run_due(db);    // any process, any time: enqueues what is due, once
#pragma once

/// @file
/// Periodic jobs (guarantee, DST rules, catch-up policies and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db) -->
/// @code
/// casecore::schedules::schedule s;
/// s.name = "nightly-report";
/// s.cron = "30 2 * * *";           // 02:30 ...
/// s.zone = "Europe/Berlin";        // ... Berlin time, DST included
/// s.job.operation = "report";
/// casecore::schedules::upsert(db, s);
/// for (const auto& t : casecore::schedules::run_due(db))   // any process: each tick once
///   (void)t.job_id;
/// @endcode

#include <casecore/database.hpp>
#include <casecore/job_queue.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::schedules {

/// What a step does with ticks it finds late (see the header comment).
enum class catch_up {
  skip,    ///< enqueue the newest due tick only when it is at most `grace` old
  latest,  ///< enqueue the newest due tick, however late
  bounded, ///< enqueue the newest `catch_up_limit` due ticks, oldest first
};

/// "skip", "latest" or "bounded".
std::string_view to_string(catch_up c) noexcept;

/// A schedule as declared: exactly one of `cron` and `every`.
struct schedule {
  std::string name;                          ///< unique name, 1..100 printable characters
  std::string cron;                          ///< five-field cron expression or an \@alias such as \@daily (cron.hpp)
  std::string zone = "UTC";                  ///< IANA time zone of `cron`
  std::chrono::milliseconds every{0};        ///< interval schedules: the period (1 s .. 366 days)
  std::chrono::milliseconds offset{0};       ///< interval schedules: phase, 0 <= offset < every
  catch_up policy = catch_up::latest;        ///< what to do with late ticks
  int catch_up_limit = 10;                   ///< bounded: most ticks one step enqueues (1..1000)
  std::chrono::milliseconds grace{60000};    ///< a tick older than this is late (0 .. 366 days)
  /// The job each tick enqueues: operation (required), payload, stages, priority, max_attempts,
  /// concurrency_key and delay as in job_queue.hpp; subject is the prefix of the tick's subject
  /// (empty: "schedule:<name>", at most 179 characters).
  jobs::job_spec job;
};

/// A stored schedule and where it stands.
struct schedule_info {
  schedule spec;                 ///< as declared (job.subject filled in)
  micros next_at = 0;            ///< the first tick after the cursor (µs since the epoch, UTC)
  micros cursor_at = 0;          ///< every tick at or before this was handled (enqueued or skipped)
  micros last_tick_at = 0;       ///< the newest tick that enqueued a job (0: none yet)
  std::int64_t last_job_id = 0;  ///< that tick's job (0: none yet)
  micros created_at = 0;         ///< first declared (database clock, or the `now` given)
  micros updated_at = 0;         ///< last upsert
};

/// A tick that enqueued a job.
struct tick {
  std::string schedule;        ///< schedule name
  micros at = 0;               ///< tick instant (µs since the epoch, UTC)
  std::int64_t job_id = 0;     ///< the job enqueued for it
};

/// Create or replace the schedule `s.name`; true when it was created. A new schedule's cursor is
/// `now` (its first tick is the first one after now); a replaced one keeps its cursor and history.
/// `now`: the database clock when empty (tests pass their own).
bool upsert(database& db, const schedule& s, std::optional<micros> now = std::nullopt);
/// upsert() in the caller's transaction (e.g. next to the host's own migrations).
bool upsert(transaction& tx, const schedule& s, std::optional<micros> now = std::nullopt);
/// Delete a schedule and its tick history; false when there was none. Jobs already enqueued stay.
bool remove(database& db, std::string_view name);
/// One schedule, or nullopt.
std::optional<schedule_info> get(database& db, std::string_view name);
/// Every schedule, by name.
std::vector<schedule_info> list(database& db);
/// The newest `limit` ticks of `name` that enqueued a job, newest first (at most 100 are kept).
std::vector<tick> recent_ticks(database& db, std::string_view name, std::size_t limit = 100);

/// Enqueue the jobs of every due tick (policy per schedule), each schedule in its own short
/// transaction; returns the ticks this call enqueued. `now`: the database clock when empty.
/// Safe to run from any number of processes at once (the guarantee above).
std::vector<tick> run_due(database& db, std::optional<micros> now = std::nullopt);

/// The job subject of tick `at` for subject prefix `subject`: "<subject>@2026-03-29T01:00:00Z".
std::string tick_subject(std::string_view subject, micros at);

} // namespace casecore::schedules

CASECORE_API_END
