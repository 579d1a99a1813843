// casecore/job_queue.hpp — a durable queue of multi-stage jobs with dedup, fenced claims and limits.
//
// A job is (operation, subject, payload) plus the list of stages it runs in order ("count", "index",
// "rules", "iocs"). enqueue() writes it in the caller's transaction.
//
// Job keys (one waiting job next to one running job per (operation, subject), like graphile-worker's
// job keys). Two partial unique indexes hold the rule: at most one *waiting* job (queued, or
// scheduled for later) and at most one *running* job per (operation, subject).
//   - enqueue with no job of that key waiting inserts one: created = true. This also happens while
//     a job of that key runs: the new request runs after the current run, with its own payload, so
//     a change made during a run is never lost (the running job may have read the old state).
//   - enqueue while a job of that key waits returns that job (created = false) and REPLACES its
//     payload with the new one (graphile-worker's "replace" mode): the newest request's data is what
//     runs. Stages, priority, schedule and attempt budget stay as first enqueued. The update locks the
//     waiting row until the enqueueing transaction commits, so the job cannot start before the
//     business write that asked for it is visible.
//   - within one enqueue_bulk call the last spec of a key is the one enqueued (same rule).
//   - a waiting job is not claimed while its key runs: two runs of one (operation, subject) never
//     overlap. When a running job has to go back to waiting (retry after a failure, reclaim,
//     release) while a newer job of its key waits, it is superseded instead: it ends `cancelled`
//     with last_error "superseded by job N", and job N runs every stage with the newest payload.
//
// Claims and fencing. claim() hands due jobs to a worker under a lease (FOR UPDATE SKIP LOCKED on
// PostgreSQL, the single writer on SQLite). Every claim gets a fencing token that increases across
// the whole database (a sequence on PostgreSQL, a counter row on SQLite, drawn in the claim's
// transaction): job::lease_epoch / claim_ref::epoch. A later claim of any job has a higher token, so
// a "full" and a "reindex" job on one file are comparable and ports can refuse an older holder's
// writes (job::fence(), casecore/ports/fence.hpp). Every later write of the claimant names the token
// (heartbeat, check, stage completion, failure, release, acknowledge_cancel) and is refused —
// lease_lost, or held = false in a batch — once the claim was reclaimed OR its lease expired on the
// database clock, even when nobody reclaimed it yet: an expired claim is dead, a heartbeat never
// revives it.
//
// Short transactions (issue 17). No casecore job transaction waits on a row lock held by someone
// else's long transaction, and none stays open longer than one bounded piece of work:
//   - heartbeat() extends all given claims in ONE set-based statement that skips rows locked right
//     now (FOR NO KEY UPDATE SKIP LOCKED: a completing batch, a guarded check()), then commits.
//   - reclaim_expired() runs in its own transactions of at most 100 rows, skipping locked rows,
//     with a lock timeout; the worker runs it on its maintenance thread, never on the heartbeat path.
//   - completions lock their rows in id order, at the end of their transaction.
//   - claims read only due jobs: a job due later is `scheduled` (shown as queued with its run_at);
//     each claim first promotes at most `batch` due scheduled jobs through an index on run_at compared
//     with a STABLE database-clock expression, then takes the head of the ready index. The cost of a
//     claim does not depend on how many jobs wait for the future.
// Bound: a job transaction holds its row locks for at most one statement batch (≤ 1000 rows) plus
// the host code it wraps (job_context::complete / write); nothing waits for a lock held by a
// handler. On SQLite there is one writer: a write transaction that stays open (host code inside
// complete()) delays every other writer, heartbeats included, so keep them short there.
//
// Dependencies (issue 13: a small workflow, fan-out and fan-in). job_spec::depends_on names jobs
// that must succeed first. The job is stored `waiting` and is never claimed; the transaction that
// completes the last of its dependencies makes it due (queued, scheduled when its delay has not
// passed, paused under a pause) — exactly once, even when two dependencies complete at the same
// moment in two transactions. When a dependency ends failed or cancelled (superseded included),
// its waiting dependents, transitively, become `blocked` with last_error "blocked: dependency job N
// is failed"; an operator's retry (job_queue_admin.hpp) of that dependency puts them back to
// waiting, and cancel() of a waiting/blocked job blocks its own dependents in turn.
//   - Cycles are impossible by construction: a dependency must exist when its dependent is
//     enqueued, so it has a smaller id; the edge table enforces depends_on < job_id with a CHECK.
//     Naming the job itself (through job-key dedup onto an older waiting job) is refused.
//   - Job keys: 'waiting' holds its key's waiting slot like queued. Enqueueing a key whose job
//     waits adds the new dependencies to that job (it waits for the union) — refused
//     (invalid_argument) when a named dependency is newer than that job. A blocked job does not
//     hold the slot: a new request of its key is a new job, and a later un-block of the old one
//     supersedes it (cancelled, "superseded by job N").
//   - PostgreSQL: enqueue locks the named dependencies FOR SHARE until it commits, so a
//     dependency's completion waits for that enqueue (and sees its edge) or the enqueue sees the
//     completion; keep enqueues with depends_on short (a heartbeat skips a locked row meanwhile).
//     Completions lock dependents in id order after their own rows (no deadlock between them).
//   - Cost: a completion without dependents pays one indexed UPDATE of the edge table.
//
// Retries: a failed stage is retried with exponential backoff and jitter from the stage that failed,
// until max_attempts, then the job is *failed* with its error kept. Limits (a global maximum of
// running jobs, a maximum per concurrency key) are exact: PostgreSQL claims with limits serialise on
// a transaction-level advisory lock and count running rows; SQLite has one writer.
// Storage: prune(retention) deletes finished jobs (their stage rows cascade) in small batches; the
// worker's elected maintenance leader runs it. The migration sets fillfactor 70 on casecore_jobs so
// heartbeats are HOT updates (no indexed column changes) and per-table autovacuum settings.
// Failure modes: invalid_argument for bad input (nothing written); lease_lost for a stale or
// expired claim; not_found for an unknown job id. Every function is thread-safe.
//
//   auto e = jobs::enqueue(tx, pipeline.make("full", "file:17"));   // in the business transaction
//   for (auto& j : jobs::claim(db, {.owner = "w1", .batch = 10})) {
//     db.write([&](transaction& tx) { write_results(tx); jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, 0); });
//   }
#pragma once

/// @file
/// The job queue: producer and worker protocol (guarantee and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db) -->
/// @code
/// const casecore::jobs::pipeline pipeline{{{"full", {"count", "index"}}}};
/// db.write([&](casecore::transaction& tx) {                // in the business transaction
///   casecore::jobs::enqueue(tx, pipeline.make("full", "file:17"));
/// });
/// for (auto& j : casecore::jobs::claim(db, {.owner = "w1", .batch = 10})) {
///   db.write([&](casecore::transaction& tx) {              // fenced by the claim's token
///     casecore::jobs::complete_stage(tx, {j.id, j.lease_epoch}, j.current_stage, 0);
///   });
/// }
/// @endcode
/// Most hosts run a casecore::jobs::worker (worker.hpp) instead of calling claim() themselves.

#include <casecore/database.hpp>
#include <casecore/ports/fence.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::jobs {

/// Lifecycle of a job (a job due later is queued; the database keeps it as 'scheduled'). A waiting
/// job a pause covers is `paused` (job_queue_admin.hpp: pause / resume) and is never claimed. A job
/// whose dependencies (job_spec::depends_on) have not all succeeded is `waiting`; one whose
/// dependency failed or was cancelled (or is itself blocked) is `blocked`, its last_error naming the
/// dependency and its state. Neither is ever claimed (see "Dependencies" above).
enum class job_state { queued, running, succeeded, failed, cancelled, paused, waiting, blocked };

/// "queued", "running", ...
std::string_view to_string(job_state s) noexcept;
/// The state named `name` ("queued", ...), or nullopt for anything else.
std::optional<job_state> state_from_string(std::string_view name) noexcept;

/// What to enqueue.
struct job_spec {
  std::string operation;                  ///< what to do, e.g. "full" (1..100 chars)
  std::string subject;                    ///< what to do it to, e.g. "file:17" (1..200 chars)
  std::string payload;                    ///< opaque data for the handlers (<= 1 MiB)
  std::vector<std::string> stages;        ///< stage names in order; empty means {"run"}
  int priority = 0;                       ///< higher runs first
  std::chrono::milliseconds delay{0};     ///< run no earlier than now + delay (database clock)
  int max_attempts = 5;                   ///< attempts before the job is failed (1..1000)
  std::string concurrency_key;            ///< limit group, e.g. "case:42" (empty = none)
  /// Ids of existing jobs that must succeed before this one is claimable (at most 1000; duplicates
  /// collapse). invalid_argument (nothing written) for an unknown id or more than 1000 ids.
  std::vector<std::int64_t> depends_on;
};

/// Result of an enqueue.
struct enqueued {
  std::int64_t id = 0;  ///< the job's id
  /// true: a new job was inserted (also while another job of the key runs); false: a job of the key
  /// was already waiting and was returned, its payload replaced by this request's.
  bool created = false;
};

/// A job as stored.
struct job {
  std::int64_t id = 0;                ///< id
  std::string operation;              ///< operation
  std::string subject;                ///< subject
  std::string payload;                ///< payload
  std::vector<std::string> stages;    ///< declared stages
  int current_stage = 0;              ///< index of the next stage to run (== stages.size() when done)
  job_state state = job_state::queued;///< state
  int priority = 0;                   ///< priority
  micros run_at = 0;                  ///< not before
  int attempts = 0;                   ///< claims so far (the running one included)
  int max_attempts = 0;               ///< attempt limit
  std::string concurrency_key;        ///< limit group
  bool cancel_requested = false;      ///< cancel() asked a running job to stop
  std::string lease_owner;            ///< worker holding it (running only)
  /// Fencing token of the current / last claim: increases across the whole database with every claim.
  std::int64_t lease_epoch = 0;
  micros lease_expires_at = 0;        ///< claim expiry (database clock)
  micros heartbeat_at = 0;            ///< last claim / heartbeat (database clock)
  std::string last_error;             ///< error of the last failed attempt
  micros created_at = 0;              ///< enqueue time
  micros finished_at = 0;             ///< end time (0 while active)

  /// The fence a port write made for this claim presents: {subject, lease_epoch}.
  casecore::fence fence() const { return {subject, lease_epoch}; }
};

/// Proof of a claim: the job id and the fencing token every fenced write must present.
struct claim_ref {
  std::int64_t id = 0;    ///< job id
  std::int64_t epoch = 0; ///< fencing token of this claim (job::lease_epoch)
};

/// How to claim.
struct claim_options {
  std::string owner;                       ///< worker identity (1..200 chars)
  std::size_t batch = 1;                   ///< jobs per claim (1..1000)
  std::chrono::milliseconds lease{30000};  ///< claim lease; heartbeats extend it
  int max_running = 0;                     ///< global limit of running jobs (0 = none)
  int max_per_key = 0;                     ///< limit per concurrency key (0 = none)
};

/// Retry delays of fail(): min(max, base * 2^(attempt-1)), jittered to [50%, 100%].
struct backoff {
  std::chrono::milliseconds base{1000}; ///< first retry delay
  std::chrono::milliseconds max{600000};///< cap
};

/// Named stage subsets of one pipeline, e.g. full = {count, index, rules, iocs}, rules-only = {rules, iocs}.
struct pipeline {
  std::map<std::string, std::vector<std::string>> operations; ///< operation -> its stages in order
  /// A spec for `operation` (invalid_argument when the pipeline does not declare it).
  job_spec make(std::string_view operation, std::string_view subject, std::string_view payload = {}) const;
};

/// Put a job on the queue inside the caller's transaction (job-key rules in the header comment).
enqueued enqueue(transaction& tx, const job_spec& spec);
/// Enqueue many in the caller's transaction; result i belongs to specs[i] (duplicates collapse).
std::vector<enqueued> enqueue_bulk(transaction& tx, std::span<const job_spec> specs);
/// Enqueue in its own transaction.
enqueued enqueue(database& db, const job_spec& spec);

/// Claim up to options.batch due jobs (priority desc, run_at, id) within the limits.
std::vector<job> claim(database& db, const claim_options& options);

/// Fence: lease_lost unless `ref` is still the running, unexpired claim. Locks the job row until the
/// transaction ends (heartbeats and reclaims skip it meanwhile), so call it as the LAST statement
/// of the guarded write: the lock then lasts only until the commit.
void check(transaction& tx, const claim_ref& ref);
/// Extend the claims to now + lease in one short transaction; returns, per extended ref, whether
/// cancel was requested. Refs that were reclaimed or whose lease already expired are reported in
/// `lost` (no exception). Refs whose row is locked right now (being completed) are skipped: neither
/// extended nor lost.
std::map<std::int64_t, bool> heartbeat(database& db, std::span<const claim_ref> refs, std::chrono::milliseconds lease,
                                       std::vector<std::int64_t>* lost = nullptr);
/// Mark stage `stage` done in the caller's transaction (fenced, expiry included); returns true when
/// it was the last one and the job succeeded. `started_at` (database clock) is recorded.
bool complete_stage(transaction& tx, const claim_ref& ref, int stage, micros started_at);
/// One stage completion of a batch.
struct stage_done {
  claim_ref ref;         ///< the claim
  int stage = 0;         ///< the stage it finished (must be the job's current stage)
  micros started_at = 0; ///< when the stage started (database clock)
};
/// What happened to one completion of a batch.
struct stage_outcome {
  bool held = false;             ///< false: the claim was lost or expired (or not at that stage); nothing written
  bool finished = false;         ///< the job succeeded (that was its last stage)
  bool cancel_requested = false; ///< cancel() was asked for meanwhile
};
/// Complete many stages in the caller's transaction (PostgreSQL: one statement that locks the rows
/// in id order; SQLite: two statements per 50). No exception for lost claims: see stage_outcome::held.
std::vector<stage_outcome> complete_stages(transaction& tx, std::span<const stage_done> done);
/// Record a failed attempt at `stage`: requeue with backoff, fail when attempts are spent, or end it
/// superseded when a newer job of its key waits. Returns the new state; lease_lost when stale/expired.
job_state fail(database& db, const claim_ref& ref, int stage, std::string_view error, const backoff& delays = {});
/// Hand a claimed job back without counting the attempt (graceful shutdown); false when lost.
bool release(database& db, const claim_ref& ref);
/// Snooze: hand a claimed job back to run again no earlier than now + `delay` (database clock),
/// from the stage it is at, WITHOUT spending an attempt (its attempt count goes back down). The
/// claim ends (the job waits as queued/scheduled — paused when due under a pause — its lease
/// cleared); stages already completed stay done. Returns queued, or cancelled when a newer job of its
/// key waits (superseded, like release).
/// Fenced: lease_lost when the claim is stale or expired (nothing changes); invalid_argument for a
/// negative delay or one over 100 years.
job_state snooze(database& db, const claim_ref& ref, std::chrono::milliseconds delay);
/// Finish a running job whose cancellation was requested (fenced); false when lost.
bool acknowledge_cancel(database& db, const claim_ref& ref);

/// Requeue running jobs whose lease expired at least `overdue` ago on the database clock (fail them
/// when out of attempts, supersede them when a newer job of their key waits), in transactions of at
/// most 100 rows that skip locked rows and never wait long for a lock; returns how many. The worker's
/// maintenance leader passes 0; the other workers pass a backstop delay (worker.hpp).
/// invalid_argument for a negative `overdue`.
std::size_t reclaim_expired(database& db, std::chrono::milliseconds overdue = std::chrono::milliseconds(0));

} // namespace casecore::jobs

CASECORE_API_END
