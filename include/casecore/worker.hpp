// casecore/worker.hpp — a pool of threads running the stages of queued jobs.
//
// A worker claims jobs in batches (see job_queue.hpp), runs each job's remaining stages in order
// with the handler registered for (operation, stage) or for the stage alone, and records each
// stage's completion fenced by the claim's token.
// Holding claims: every job of a batch is held — heartbeated — from the moment claim() returns,
// not only the one running, so jobs waiting behind a long stage keep their claims. Before every
// stage the worker makes sure the claim is still held (locally: the last confirmed extension plus
// the lease, measured on a monotonic clock from before the statement; when that is close, it asks
// the database) and never starts a handler whose claim is gone.
// Threads: `threads` handler threads; one heartbeat thread that extends all held claims every
// `heartbeat` in one short set-based transaction (rows being completed are skipped, never waited
// for); one maintenance thread. Every maintenance thread ticks the election for the lease
// "casecore.jobs.maintenance" every leader_ttl / 3 (a leader_election, leader.hpp). The elected
// worker requeues expired claims (reclaim_expired, its own short transactions, never on the
// heartbeat path) every heartbeat period; the others requeue only claims expired for longer than one
// `lease`, a backstop that finds nothing while the leader lives and covers a dead or stalled
// leader's duty without waiting for a failover (a claim of a dead worker is requeued within one
// heartbeat period of its expiry, or within one lease more when the leader died too). The elected
// worker also prunes finished jobs by `retain` in small batches every
// `maintenance` (one pruner per database, not one per worker) and, on PostgreSQL, vacuums the jobs
// table (throttled like autovacuum) once the server counts `vacuum_dead_rows` dead row versions in
// it: a busy queue claims from the head of its ready index, where the rows it just claimed leave
// dead entries that only a vacuum removes, and the server's autovacuum visits a database only once
// per autovacuum_naptime (1 min by default); checked at most once a second. With
// worker_options::schedules set, the maintenance thread also enqueues due periodic jobs
// (schedule.hpp) on every worker.
// Leader tasks (worker_options::leader_tasks): the host's own periodic work, run on the maintenance
// thread of the one worker that holds the "casecore.jobs.maintenance" lease (a leader_election,
// leader.hpp), each every `period`, with the leader's fence. While a worker has leader tasks it
// ticks its election every leader_ttl / 3 (default leader_ttl: max(3 × maintenance, 3 s)): the
// leader renews, the others campaign, so a dead leader's tasks move to another worker within
// leader_ttl + leader_ttl / 3, a stopped one's (stop() resigns) within leader_ttl / 3. A task runs
// only while this worker believes it leads; a paused leader may still run one after its term
// ended: fence its writes.
// Exactly once: a handler that wants its own writes to happen exactly once per stage does them
// through job_context::complete(): they commit in the same transaction as the stage completion,
// fenced by the claim's token and expiry on the database clock, so a worker that died, was paused
// past its lease (SIGSTOP, GC) or was fenced off mid-stage leaves nothing behind and the stage is
// run again by the next claimant. complete() locks the job row only in its last statement, so a
// slow transaction never holds up anyone's heartbeat. Writes outside complete() are at-least-once;
// writes to ports present job_context::fence() so a port can refuse an older claimant.
// Noticing loss: when a heartbeat finds a claim lost (reclaimed, or expired on the database clock)
// the worker sets job_context::lost(), requests job_context::stop_token(), and interrupts the
// handler's Boost thread: boost::this_thread::interruption_point() (and Boost sleeps/waits) inside
// the handler then throw boost::thread_interrupted, which the worker catches (the job is dropped,
// its new owner carries on). run_once() runs on the caller's thread: no interruption there, and no
// background heartbeat unless the worker was start()ed — only the check before each stage.
// Shutdown: stop() lets each thread finish the stage it is running, hands every job it still holds
// back to the queue (release, the attempt is not counted; unstarted jobs of a batch too), keeps
// heartbeating until then, and joins the threads.
// Wake-ups: a worker sleeps between empty claims through the wait_for_work hook (default: an
// in-process condition variable with a poll interval); notify() wakes it early. Idle cost: each
// thread makes one empty claim per `poll` (two index probes that read a handful of buffers whatever
// the number of future jobs); the default 500 ms gives 2 claims/s per thread and an average
// enqueue-to-start latency of ~poll/2 without notify (docs/PERFORMANCE.md, "Long runs", has figures).
// Snooze: a handler that cannot do its work yet (an upstream not ready, a quota spent) calls
// job_context::snooze(delay) and returns: the claim ends, the job runs again from this stage after
// `delay`, and the attempt is not spent (jobs::snooze). Stages it completed before stay done.
// Start limits (worker_options::start_limits): at most N job starts per period P per operation (or
// per operation and concurrency key), across every worker on every host, enforced with a
// rate_limiter key in the database ("casecore.jobs.start:<len>:<operation>[:<concurrency key>]").
// A start is a claim reaching its first handler: before it, the worker takes a token of every limit
// of the job's operation in one transaction that also checks the claim (a lost claim spends no
// token) and records the token's database-clock time as the stage's start (job_context::started_at).
// A job that gets no token is snoozed until the oldest token frees, without spending an attempt; a
// retried or snoozed job takes a new token when it starts again. Every worker must be configured
// with the same limits (the limiter follows the last caller's N). The bound counts starts, not
// running jobs (max_running / max_per_key bound those).
// Outputs (job_outputs.hpp): job_context::set_output / set_output_json record this stage's output,
// written in the transaction that completes the stage (fenced like it: a failed, snoozed or lost
// run writes nothing); later stages read it with job_context::output("stage"), operators with
// jobs::outputs. At most worker_options::max_output bytes (default 64 KiB).
// Drain (deploys): drain(timeout) stops claiming at once, hands every claimed job that has not
// started back to the queue at once (another worker can claim it while the running handlers go
// on), lets each running handler finish its stage (later stages of its job are handed back, as by
// stop()), and returns when they have, or at the deadline. A job still held at the deadline is
// handed back too (release: the attempt is not counted) and its handler is told as for a lost claim
// (lost(), stop_token(), Boost interruption); whatever it commits afterwards through complete() or
// write() is refused (lease_lost) and fenced ports refuse its token once the job is claimed again.
// A thread cannot be killed: a handler that ignores the signal runs on until it returns, and stop()
// or the destructor waits for it (drain_result::stopped is false then). A claim that was already
// in flight when drain() began may still return jobs: they are handed back unstarted.
// Failure modes: a handler's exception fails the attempt (retry with backoff, then failed); a lost
// claim drops the job silently. Thread-safe.
#pragma once

#include <casecore/job_queue.hpp>
#include <casecore/job_outputs.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/leader.hpp>
#include <casecore/ports/task_transport.hpp>
#include <casecore/rate_limiter.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {
struct claim_signal; ///< what the worker tells a handler about its claim (lost, cancel requested)
} // namespace casecore::detail

namespace casecore::jobs {

/// What a stage handler sees of its job.
class job_context {
public:
  /// Built by the worker.
  job_context(database& db, const job& j, int stage, micros started_at, std::shared_ptr<casecore::detail::claim_signal> signal);
  /// The job as claimed.
  const job& current() const noexcept { return job_; }
  /// The stage being run.
  const std::string& stage() const noexcept { return job_.stages[static_cast<std::size_t>(stage_)]; }
  /// Its index in the job's stage list.
  int stage_index() const noexcept { return stage_; }
  /// The claim (id + fencing token) to fence writes with.
  claim_ref ref() const noexcept { return {job_.id, job_.lease_epoch}; }
  /// The fence to present to ports (search index, blob store): {subject, token}.
  casecore::fence fence() const { return job_.fence(); }
  /// True once cancel() was requested for this job (seen at heartbeat); stop early if you can.
  bool cancel_requested() const noexcept;
  /// True once the worker found the claim lost (reclaimed or expired); fenced writes will be refused.
  bool lost() const noexcept;
  /// Requested when the claim is lost: poll stop_requested() or register a std::stop_callback.
  std::stop_token stop_token() const noexcept;
  /// Run `f`, then check the claim, in one write transaction (lease_lost when it is stale or expired).
  void write(const std::function<void(transaction&)>& f);
  /// Run `f` and mark this stage done in one fenced transaction: exactly-once stage effects. The job
  /// row is locked only by the completing statement at the end, never while `f` runs.
  void complete(const std::function<void(transaction&)>& f);
  /// True after complete() committed.
  bool completed() const noexcept { return completed_; }
  /// Hand the job back to run again from this stage no earlier than now + `delay`, without spending
  /// an attempt (jobs::snooze); then return from the handler. lease_lost when the claim was lost;
  /// invalid_argument after complete() of the last stage or a second snooze (and write() or
  /// complete() after a snooze: the claim ended).
  void snooze(std::chrono::milliseconds delay);
  /// True after snooze() succeeded.
  bool snoozed() const noexcept { return snoozed_; }
  /// When this stage started on the database clock (the claim's time plus the local time since; for
  /// a start-limited job's first stage, exactly its start token's time).
  micros started_at() const noexcept { return started_at_; }
  /// The database.
  database& db() noexcept { return db_; }
  /// Record `bytes` as this stage's output, written with the stage's completion (job_outputs.hpp);
  /// replaces an earlier set_output of this run. invalid_argument (nothing recorded) when empty or
  /// larger than worker_options::max_output, or after the stage completed or the job was snoozed.
  void set_output(std::string_view bytes);
  /// Record JSON text as this stage's output, like set_output; also invalid_argument unless it is
  /// valid UTF-8 and valid JSON (one read statement asks the database's JSON parser).
  void set_output_json(std::string_view text);
  /// The output stage `stage` of this job recorded with its completion, or nullopt (one read);
  /// invalid_argument when the job declares no such stage.
  std::optional<stage_output> output(std::string_view stage);

private:
  database& db_;
  const job& job_;
  int stage_;
  micros started_at_;
  std::shared_ptr<casecore::detail::claim_signal> signal_;
  bool completed_ = false;
  bool snoozed_ = false;
  bool cancel_seen_ = false;
  std::size_t max_output_ = default_max_output;
  std::optional<std::pair<output_kind, std::string>> output_; // set, not yet written
  void set_pending_output(output_kind kind, std::string_view data);
  friend class worker;
};

/// A stage handler.
using stage_handler = std::function<void(job_context&)>;

/// At most limit.count starts of `operation`'s jobs per limit.period, across all workers and hosts.
struct start_limit {
  std::string operation;            ///< the operation it throttles (1..100 printable characters)
  rate_limiter::limit limit;        ///< N starts per P
  /// One budget per concurrency key of the operation (jobs without a key share the budget of the
  /// empty key) instead of one for the whole operation.
  bool per_concurrency_key = false;
};

/// Settings of a worker.
struct worker_options {
  std::string owner;                                  ///< identity (default: random)
  int threads = 4;                                    ///< handler threads (1..256)
  std::size_t batch = 1;                              ///< jobs claimed per claim per thread
  std::chrono::milliseconds lease{30000};             ///< claim lease
  std::chrono::milliseconds heartbeat{0};             ///< heartbeat period (0 = lease / 3)
  std::chrono::milliseconds poll{500};                ///< longest sleep between empty claims (idle cost: see above)
  int max_running = 0;                                ///< global running limit (0 = none; same on every worker)
  int max_per_key = 0;                                ///< per concurrency key limit (0 = none)
  backoff retry;                                      ///< retry delays of failed attempts
  /// Shared start limits (see the header comment); at most one per (operation, per_concurrency_key).
  std::vector<start_limit> start_limits;
  /// Finished-job history kept by the maintenance leader (default: 7 days; {0, 0} keeps everything).
  retention retain{std::chrono::hours(24 * 7), 0};
  /// How often the maintenance leader prunes by `retain` (0 = this worker never prunes).
  std::chrono::milliseconds maintenance{60000};
  /// The maintenance leader vacuums casecore_jobs when the server counts at least this many dead
  /// row versions in it (PostgreSQL, not behind a transaction pooler; 0 = never; see above).
  std::int64_t vacuum_dead_rows = 200000;
  /// How often this worker enqueues due periodic jobs (schedules::run_due on the database clock, on
  /// the maintenance thread; every worker may, the tick key keeps it exact). 0 = never (the default).
  std::chrono::milliseconds schedules{0};
  /// Periodic work run only on the maintenance leader (see above; leader.hpp has ready-made tasks).
  std::vector<leader_task> leader_tasks;
  /// Term of the maintenance leader's lease (0 = max(3 × maintenance, 3 s)); bounds failover.
  std::chrono::milliseconds leader_ttl{0};
  /// Sleep until work may be ready or `timeout` passed (default: in-process condition variable).
  std::function<void(std::chrono::milliseconds)> wait_for_work;
  /// Wake sleepers (default: the in-process condition variable); called by notify() and stop().
  std::function<void()> notify;
  /// Wake-ups through a task_transport port (in-process, Redis, ...), taking precedence over the two
  /// hooks above: every thread subscribes to `topic` before it claims, so a notify that lands between
  /// an empty claim and the wait is never lost; `poll` still bounds every wait.
  std::shared_ptr<task_transport> transport;
  /// The transport topic producers notify (see notify_after_commit).
  std::string topic = "casecore.jobs";
  /// Largest stage output a handler may record, in bytes (1 .. max_output_limit; job_outputs.hpp).
  std::size_t max_output = default_max_output;
};

/// After `tx` commits, tell workers listening on `topic` that work is ready (never on rollback).
void notify_after_commit(transaction& tx, std::shared_ptr<task_transport> transport, std::string topic = "casecore.jobs");

/// Figures of a worker since start.
struct worker_stats {
  std::uint64_t claimed = 0;    ///< jobs claimed
  std::uint64_t stages = 0;     ///< stages completed
  std::uint64_t succeeded = 0;  ///< jobs finished
  std::uint64_t failures = 0;   ///< failed attempts
  std::uint64_t lost = 0;       ///< claims lost to another worker
  std::uint64_t released = 0;   ///< jobs handed back at shutdown
  std::uint64_t snoozed = 0;    ///< jobs their handler snoozed
  std::uint64_t throttled = 0;  ///< jobs snoozed because a start limit had no token free
  std::uint64_t cancelled = 0;  ///< jobs ended by cancellation
  std::uint64_t reclaimed = 0;  ///< expired claims (of any worker) requeued by this worker's maintenance thread
  std::uint64_t pruned = 0;     ///< finished jobs deleted while this worker was the maintenance leader
  std::uint64_t vacuums = 0;    ///< vacuums of the jobs table run while this worker was the maintenance leader
  std::uint64_t scheduled = 0;  ///< periodic-job ticks this worker enqueued (worker_options::schedules)
};

/// What drain() did (counted from when it began).
struct drain_result {
  std::uint64_t finished = 0;    ///< stages completed by the handlers that were running
  std::uint64_t succeeded = 0;   ///< jobs that finished
  std::uint64_t failed = 0;      ///< failed attempts (those jobs retry per their backoff, on any worker)
  std::uint64_t handed_back = 0; ///< jobs handed back to the queue (unstarted, between stages, or at the deadline)
  std::uint64_t interrupted = 0; ///< of those, jobs still held at the deadline whose handlers were told to stop
  bool stopped = false;          ///< every thread ended (false: a told handler still runs; stop() waits for it)
};

/// A pool of threads running registered stage handlers.
class worker {
public:
  /// A stopped worker on `db`.
  worker(database db, worker_options options = {});
  /// stop().
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Run `h` for stage `stage` of every operation without a more specific handler (before start()).
  void on_stage(std::string stage, stage_handler h);
  /// Run `h` for stage `stage` of `operation` (before start()).
  void on_stage(std::string operation, std::string stage, stage_handler h);

  /// Start the threads.
  void start();
  /// Finish running stages, release held jobs, join. Idempotent.
  void stop();
  /// Drain-then-stop for deploys (header comment): no new claims, unstarted jobs handed back at
  /// once, running stages finish until `timeout`, then what is still held is handed back and its
  /// handlers told to stop. invalid_argument for a negative timeout; a worker not started returns
  /// at once (stopped = true). Call start(), stop() and drain() from one controlling thread.
  drain_result drain(std::chrono::milliseconds timeout);
  /// Wake sleeping threads (new work was enqueued).
  void notify();
  /// Claim one batch and run it on the calling thread; returns the number of jobs claimed.
  std::size_t run_once();
  /// Figures so far.
  worker_stats stats() const;
  /// The owner name used for claims.
  const std::string& owner() const noexcept;

private:
  struct state;
  std::shared_ptr<state> state_;
};

} // namespace casecore::jobs

CASECORE_API_END
