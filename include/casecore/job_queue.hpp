// casecore/job_queue.hpp — a durable queue of multi-stage jobs with dedup, leases and limits.
//
// A job is (operation, subject, payload) plus the list of stages it runs in order ("count", "index",
// "rules", "iocs"). enqueue() writes it in the caller's transaction; at most one *active* (queued or
// running) job exists per (operation, subject), enforced by a partial unique index: enqueueing again
// returns the existing job. claim() hands ready jobs to a worker under a lease with an epoch
// (FOR UPDATE SKIP LOCKED on PostgreSQL, the single writer on SQLite); every later write of that
// worker (heartbeat, stage completion, failure, release) names the epoch and is refused with
// lease_lost once the job was reclaimed by someone else, so a stale worker can never complete,
// fail or advance a job it lost. A failed stage is retried with exponential backoff and jitter
// from the stage that failed, until max_attempts, then the job is *failed* with its error kept.
// Concurrency limits (a global maximum of running jobs, a maximum per concurrency key) are exact:
// PostgreSQL claims with limits serialise on a transaction-level advisory lock and count running
// rows in the database; SQLite has one writer.
// Failure modes: invalid_argument for bad input (nothing written); lease_lost for a stale epoch;
// not_found for an unknown job id. Every function is thread-safe.
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace casecore::jobs {

/// Lifecycle of a job.
enum class job_state { queued, running, succeeded, failed, cancelled };

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
};

/// Result of an enqueue.
struct enqueued {
  std::int64_t id = 0;  ///< the job's id
  bool created = false; ///< false when an active job for (operation, subject) already existed
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
  std::int64_t lease_epoch = 0;       ///< epoch of the current / last claim
  micros lease_expires_at = 0;        ///< claim expiry
  micros heartbeat_at = 0;            ///< last claim / heartbeat (database clock)
  std::string last_error;             ///< error of the last failed attempt
  micros created_at = 0;              ///< enqueue time
  micros finished_at = 0;             ///< end time (0 while active)
};

/// Proof of a claim: the job id and the epoch every fenced write must present.
struct claim_ref {
  std::int64_t id = 0;    ///< job id
  std::int64_t epoch = 0; ///< lease epoch of this claim
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

/// Put a job on the queue inside the caller's transaction (returns the active one on duplicates).
enqueued enqueue(transaction& tx, const job_spec& spec);
/// Enqueue many in the caller's transaction; result i belongs to specs[i] (duplicates collapse).
std::vector<enqueued> enqueue_bulk(transaction& tx, std::span<const job_spec> specs);
/// Enqueue in its own transaction.
enqueued enqueue(database& db, const job_spec& spec);

/// Claim up to options.batch ready jobs (priority desc, run_at, id) within the limits.
std::vector<job> claim(database& db, const claim_options& options);

/// Fence: lease_lost unless `ref` is still the running claim (use inside a guarded write).
void check(transaction& tx, const claim_ref& ref);
/// Extend the claims to now + lease in one transaction; returns, per ref, whether cancel was
/// requested; refs that were lost are reported in `lost` instead (no exception).
std::map<std::int64_t, bool> heartbeat(database& db, std::span<const claim_ref> refs, std::chrono::milliseconds lease,
                                       std::vector<std::int64_t>* lost = nullptr);
/// Mark stage `stage` done in the caller's transaction (fenced); returns true when it was the last
/// one and the job succeeded. `started_at` (database clock) is recorded as the stage's start.
bool complete_stage(transaction& tx, const claim_ref& ref, int stage, micros started_at);
/// One stage completion of a batch.
struct stage_done {
  claim_ref ref;         ///< the claim
  int stage = 0;         ///< the stage it finished (must be the job's current stage)
  micros started_at = 0; ///< when the stage started (database clock)
};
/// What happened to one completion of a batch.
struct stage_outcome {
  bool held = false;             ///< false: the claim was lost (or not at that stage); nothing written
  bool finished = false;         ///< the job succeeded (that was its last stage)
  bool cancel_requested = false; ///< cancel() was asked for meanwhile
};
/// Complete many stages in the caller's transaction with two statements per 50 (no exception for
/// lost claims: see stage_outcome::held).
std::vector<stage_outcome> complete_stages(transaction& tx, std::span<const stage_done> done);
/// Record a failed attempt at `stage`: requeue with backoff or, when attempts are spent, fail.
/// Returns the new state; lease_lost when the claim is stale.
job_state fail(database& db, const claim_ref& ref, int stage, std::string_view error, const backoff& delays = {});
/// Hand a claimed job back without counting the attempt (graceful shutdown); false when lost.
bool release(database& db, const claim_ref& ref);
/// Finish a running job whose cancellation was requested (fenced); false when lost.
bool acknowledge_cancel(database& db, const claim_ref& ref);

/// Cancel: a queued job ends at once, a running one is asked to stop at its next stage boundary or
/// heartbeat. False when the job is not active.
bool cancel(database& db, std::int64_t id);
/// Operator retry: put a failed or cancelled job back on the queue, due now, resuming at the stage
/// where it stopped, with a fresh attempt budget (last_error is kept). not_found for an unknown id,
/// invalid_transition when the job is not failed / cancelled, already_exists when another active
/// job for the same (operation, subject) exists. Returns the requeued job.
job retry(database& db, std::int64_t id);
/// Requeue running jobs whose lease expired (or fail them when out of attempts); returns how many.
std::size_t reclaim_expired(database& db);
/// Delete finished jobs that ended before now - older_than; returns how many.
std::size_t prune(database& db, std::chrono::milliseconds older_than);

/// One job, or nullopt.
std::optional<job> get(database& db, std::int64_t id);
/// Up to `limit` (1..10000) jobs, newest first, only those in `state` when given.
std::vector<job> list(database& db, std::optional<job_state> state = std::nullopt, std::size_t limit = 100);

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
  std::map<std::string, std::int64_t> by_state;        ///< count per state
  std::map<std::string, std::int64_t> active_by_stage; ///< queued + running jobs per current stage name
  std::int64_t ready = 0;                              ///< queued and due now
  micros oldest_ready_age = 0;                         ///< age of the oldest due job (0 when none)
  std::vector<std::int64_t> stuck;                     ///< running jobs whose lease has expired
};
/// Counts by state and stage, oldest ready age, stuck jobs.
queue_stats inspect(database& db);

} // namespace casecore::jobs
