// casecore/job_queue_admin.hpp — what operators do with the job queue: look, cancel, retry, prune,
// pause and resume.
//
// Concept: the calls a dashboard, the `casecore job ...` commands or a maintenance task make; the
// producer / worker protocol (enqueue, claim, heartbeat, complete, fail) is in job_queue.hpp.
// Guarantees: cancel() ends a waiting job at once and asks a running one to stop at its next stage
// boundary or heartbeat; retry() requeues a failed or cancelled job at the stage where it stopped,
// keeping job keys (one waiting job per operation and subject); prune() deletes finished jobs (their
// stage rows cascade) in short batches, newest kept. Reads (get, list, stages, inspect) are single
// read-only transactions. Failure modes: not_found, invalid_transition, already_exists (retry);
// invalid_argument for bad limits or retention. Thread-safe.
//
// Pauses are durable rows every process and host reads: once pause() returned, no claim that starts
// afterwards, on any worker anywhere, claims a job the pause covers (a claim already running when the
// pause commits may still take one: it is concurrent with it). Jobs already running go on to the end
// of their stages. A pause names an operation, a concurrency key (across operations), or both. Its
// waiting jobs show as `paused`, hold their key's waiting slot (enqueue still replaces the payload),
// and can be cancelled; jobs enqueued, retried or coming due while it holds are paused too. resume()
// lifts one pause: its jobs wait again unless another pause still covers them. Holds under every
// isolation level and behind PgBouncer in transaction mode (no session state), on both backends.
//
//   for (const auto& j : jobs::list(db, jobs::job_state::failed, 20)) jobs::retry(db, j.id);
//   jobs::prune(db, jobs::retention{std::chrono::hours(24 * 7), 100000});
//   jobs::pause(db, {.operation = "ocr"}, "OCR service down", "ops@alice");   // ... later:
//   jobs::resume(db, {.operation = "ocr"});
#pragma once

#include <casecore/job_outputs.hpp> // jobs::outputs(db, id): what each stage recorded
#include <casecore/job_queue.hpp>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::jobs {

/// Cancel: a waiting job ends at once, a running one is asked to stop at its next stage boundary or
/// heartbeat. False when the job is not active.
bool cancel(database& db, std::int64_t id);
/// Operator retry: put a failed or cancelled job back on the queue, due now, resuming at the stage
/// where it stopped, with a fresh attempt budget (last_error is kept). not_found for an unknown id,
/// invalid_transition when the job is not failed / cancelled, already_exists when another job for
/// the same (operation, subject) is waiting. Returns the requeued job.
job retry(database& db, std::int64_t id);

/// How much finished-job history to keep (stage rows go with their job).
struct retention {
  std::chrono::milliseconds max_age{0}; ///< delete jobs that finished longer ago than this (0 = no age limit)
  std::int64_t max_finished = 0;        ///< keep at most this many finished jobs, newest first (0 = no count limit)
};
/// Delete finished jobs beyond `keep`, `batch` rows per transaction (1..10000), stopping after
/// about `max_rows` (0 = no limit; call again to go on); returns how many. Jobs finishing while it
/// runs are newer than every row it deletes.
std::size_t prune(database& db, const retention& keep, std::size_t batch = 1000, std::size_t max_rows = 0);
/// Delete finished jobs that ended before now - older_than; returns how many.
std::size_t prune(database& db, std::chrono::milliseconds older_than);

/// One job, or nullopt.
std::optional<job> get(database& db, std::int64_t id);
/// Up to `limit` (1..10000) jobs, newest first, only those in `state` when given.
std::vector<job> list(database& db, std::optional<job_state> state = std::nullopt, std::size_t limit = 100);

/// A page of the job list: filters and a keyset cursor (ids are never reused, so a page stays stable
/// while jobs are added; no OFFSET scan grows with the page number).
struct list_query {
  std::optional<job_state> state; ///< only jobs in this state (queued includes scheduled)
  std::string operation;          ///< only jobs of this operation ("" = all)
  std::int64_t before_id = 0;     ///< only jobs with id < before_id (0 = from the newest)
  std::size_t limit = 100;        ///< at most this many (1..10000)
};
/// One page of jobs, newest first, walking the primary key backwards (as list() does).
std::vector<job> list(database& db, const list_query& query);

/// Progress of one stage of one job.
struct stage_record {
  std::string stage;         ///< stage name
  int position = 0;          ///< index in the job's stage list
  std::string state;         ///< "succeeded" or "failed"
  micros started_at = 0;     ///< start of the last attempt
  micros finished_at = 0;    ///< end of the last attempt
  int attempts = 0;          ///< attempts of this stage
  std::string error;         ///< error of the last failed attempt
};
/// Per-stage progress, timings and errors of a job, in stage order.
std::vector<stage_record> stages(database& db, std::int64_t id);

/// Queue figures for dashboards.
struct queue_stats {
  std::map<std::string, std::int64_t> by_state;        ///< count per state (scheduled jobs count as queued)
  std::map<std::string, std::int64_t> active_by_stage; ///< queued + running jobs per current stage name
  std::int64_t ready = 0;                              ///< queued and due now
  std::int64_t scheduled = 0;                          ///< queued but not due yet
  micros oldest_ready_age = 0;                         ///< age of the oldest due job (0 when none)
  std::vector<std::int64_t> stuck;                     ///< running jobs whose lease has expired
};
/// Counts by state and stage, oldest ready age, stuck jobs.
queue_stats inspect(database& db);

/// What a pause covers: one operation, one concurrency key (in every operation), or that key in that
/// operation. An empty field means "any"; both empty is refused.
struct pause_target {
  std::string operation;       ///< operation name (1..100 printable characters), or empty for any
  std::string concurrency_key; ///< concurrency key (up to 200 printable characters), or empty for any
};
/// A pause as stored.
struct pause_record {
  pause_target target;       ///< what it covers
  micros paused_at = 0;      ///< when (database clock)
  std::string paused_by;     ///< who, as given to pause()
  std::string reason;        ///< why, as given to pause()
  std::int64_t paused_jobs = 0; ///< waiting jobs held in state paused that it covers
};
/// Pause `target` for every worker on every host until resume(); its waiting jobs become paused.
/// True when the pause is new, false when it already held (its reason and author are kept).
/// invalid_argument for an empty or malformed target, a reason over 500 or an author over 200 bytes.
bool pause(database& db, const pause_target& target, std::string_view reason = {}, std::string_view by = {});
/// Lift the pause of exactly `target`; its jobs wait again unless another pause covers them. True
/// when a pause was lifted. Jobs left paused with no pause covering them (none should be) are
/// requeued by any resume() of a target that covers them.
bool resume(database& db, const pause_target& target);
/// Every pause in force, oldest first, with the number of jobs each holds.
std::vector<pause_record> pauses(database& db);

} // namespace casecore::jobs

CASECORE_API_END
