#include <casecore/detail/text.hpp>
#include <casecore/detail/token.hpp>
#include <casecore/leader.hpp>
#include <casecore/lease.hpp>
#include <casecore/schedule.hpp>
#include <casecore/log.hpp>
#include <casecore/worker.hpp>
#include "job_outputs_internal.hpp"

#include <boost/thread/thread.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <algorithm>
#include <optional>
#include <vector>

namespace casecore::detail {
// Shared by the runner, the heartbeat thread and the handler's job_context.
struct claim_signal {
  std::atomic<bool> lost{false};
  std::atomic<bool> cancel{false};
  std::stop_source stop;
  // Monotonic-clock time (ns) until which the claim is certainly held: the steady time taken just
  // BEFORE the claim / heartbeat statement that set the expiry, plus the lease. The database set
  // expiry = its now + lease at a moment after that, so this never overestimates the claim.
  std::atomic<std::int64_t> held_until_ns{0};
  // Who runs the claimed job: 0 waiting in its batch, 1 started by its thread, 2 handed back by
  // drain() (the two race through compare-and-swap from 0, so a job is never both run and released).
  std::atomic<int> phase{0};
};
} // namespace casecore::detail

namespace casecore::jobs {

namespace {

using steady = std::chrono::steady_clock;

std::int64_t ns(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

constexpr std::string_view maintenance_lease = "casecore.jobs.maintenance";

} // namespace

job_context::job_context(database& db, const job& j, int stage, micros started_at, std::shared_ptr<casecore::detail::claim_signal> signal)
    : db_(db), job_(j), stage_(stage), started_at_(started_at), signal_(std::move(signal)) {}

bool job_context::cancel_requested() const noexcept { return cancel_seen_ || signal_->cancel.load(); }
bool job_context::lost() const noexcept { return signal_->lost.load(); }
std::stop_token job_context::stop_token() const noexcept { return signal_->stop.get_token(); }

void job_context::write(const std::function<void(transaction&)>& f) {
  if (snoozed_) raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " was snoozed: its claim ended");
  if (lost()) throw lease_lost("job " + std::to_string(job_.id) + ": the claim was lost");
  db_.write([&](transaction& tx) {
    f(tx);
    check(tx, ref()); // last: the job row is locked only from here to the commit
  });
}

void job_context::complete(const std::function<void(transaction&)>& f) {
  if (completed_) raise(errc::invalid_argument, "stage already completed");
  if (snoozed_) raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " was snoozed: its claim ended");
  if (lost()) throw lease_lost("job " + std::to_string(job_.id) + ": the claim was lost");
  cancel_seen_ = db_.write([&](transaction& tx) {
    f(tx);
    // The output rides on the fenced completion below: a lost claim rolls it back with the stage.
    if (output_) internal::write_output(tx, job_.id, job_.lease_epoch, stage_, stage(), {output_->first, output_->second});
    // The fence is the completing statement itself (token + expiry on the database clock); it is the
    // only statement that locks the job row, so heartbeats never wait for `f`.
    const stage_done d{ref(), stage_, started_at_};
    const auto o = complete_stages(tx, std::span<const stage_done>(&d, 1));
    if (!o[0].held) complete_stage(tx, ref(), stage_, started_at_); // throws lease_lost / invalid_argument
    return o[0].cancel_requested;
  });
  completed_ = true;
}

void job_context::set_pending_output(output_kind kind, std::string_view data) {
  if (completed_) raise(errc::invalid_argument, "job " + std::to_string(job_.id) + ": stage already completed; set its output before complete()");
  if (snoozed_) raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " was snoozed: its claim ended");
  check_output(kind, data, max_output_);
  if (kind == output_kind::json) internal::check_json(db_, data);
  output_.emplace(kind, std::string(data));
}

void job_context::set_output(std::string_view bytes) { set_pending_output(output_kind::bytes, bytes); }

void job_context::set_output_json(std::string_view text) { set_pending_output(output_kind::json, text); }

std::optional<stage_output> job_context::output(std::string_view name) {
  if (std::find(job_.stages.begin(), job_.stages.end(), name) == job_.stages.end())
    raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " has no stage of that name");
  return jobs::output(db_, job_.id, name);
}

void job_context::snooze(std::chrono::milliseconds delay) {
  if (snoozed_) raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " is already snoozed");
  if (completed_ && stage_ + 1 == static_cast<int>(job_.stages.size()))
    raise(errc::invalid_argument, "job " + std::to_string(job_.id) + " completed its last stage: nothing to snooze");
  if (lost()) throw lease_lost("job " + std::to_string(job_.id) + ": the claim was lost");
  jobs::snooze(db_, ref(), delay); // fenced: lease_lost when the claim is stale or expired
  snoozed_ = true;
}

namespace {

// The rate_limiter key of a start limit: the operation's length first, so no operation / key pair
// can spell another's ("a:b" + "c" vs "a" + "b:c").
std::string start_key(const start_limit& l, const job& j) {
  std::string k = "casecore.jobs.start:" + std::to_string(l.operation.size()) + ":" + l.operation;
  if (l.per_concurrency_key) k += ":" + j.concurrency_key;
  return k;
}

// Whether the job may start now: a token of every start limit of its operation, taken in one
// transaction that checks the claim last (a lost claim rolls the tokens back).
struct admission {
  bool admitted = true;
  std::chrono::microseconds retry_after{0};
  micros at = 0; // the tokens' database-clock time
};

} // namespace

struct worker::state {
  database db;
  worker_options opt;
  std::map<std::pair<std::string, std::string>, stage_handler> handlers; // ("" or operation, stage)

  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};
  std::vector<boost::thread> threads;
  boost::thread heartbeat_thread;
  boost::thread maintenance_thread;

  std::mutex wake_m;
  std::condition_variable wake_cv;
  std::uint64_t wake_seq = 0;

  // The background threads outlive the handler threads at stop(): claims stay heartbeated until
  // every handler finished its stage and handed its jobs back.
  std::mutex bg_m;
  std::condition_variable bg_cv;
  bool bg_stop = false;

  std::mutex held_m;
  std::map<std::int64_t, std::pair<std::int64_t, std::shared_ptr<casecore::detail::claim_signal>>> held; // id -> (token, signal)

  std::mutex slots_m;
  std::vector<std::int64_t> slot_job; // job whose handler handler thread i runs now (0: none)

  // Handler threads still inside thread_main: drain() waits for none to be left.
  std::mutex live_m;
  std::condition_variable live_cv;
  int live = 0;

  mutable std::mutex stats_m;
  worker_stats stats;

  state(database d, worker_options o) : db(std::move(d)), opt(std::move(o)) {}

  std::chrono::milliseconds period() const { return opt.heartbeat.count() > 0 ? opt.heartbeat : std::max(opt.lease / 3, std::chrono::milliseconds(1)); }

  void bump(std::uint64_t worker_stats::*field, std::uint64_t n = 1) {
    std::lock_guard g(stats_m);
    stats.*field += n;
  }

  const stage_handler* find(const std::string& operation, const std::string& stage) const {
    if (auto it = handlers.find({operation, stage}); it != handlers.end()) return &it->second;
    if (auto it = handlers.find({"", stage}); it != handlers.end()) return &it->second;
    return nullptr;
  }

  // --- held claims ------------------------------------------------------------------------------

  void hold(const job& j, steady::time_point before_claim) {
    auto sig = std::make_shared<casecore::detail::claim_signal>();
    sig->cancel = j.cancel_requested;
    sig->held_until_ns = ns(before_claim + opt.lease);
    std::lock_guard g(held_m);
    held[j.id] = {j.lease_epoch, std::move(sig)};
  }
  std::shared_ptr<casecore::detail::claim_signal> signal_of(std::int64_t id) {
    std::lock_guard g(held_m);
    auto it = held.find(id);
    return it == held.end() ? nullptr : it->second.second;
  }
  void unhold(std::int64_t id) {
    std::lock_guard g(held_m);
    held.erase(id);
  }

  void extended(casecore::detail::claim_signal& sig, steady::time_point before, bool cancel) {
    const auto until = ns(before + opt.lease);
    auto cur = sig.held_until_ns.load();
    while (cur < until && !sig.held_until_ns.compare_exchange_weak(cur, until)) {
    }
    if (cancel) sig.cancel = true;
  }

  // Tell the handler: flag, stop token, and a Boost interruption of the thread running it (only
  // while it runs this job's handler: the slot is cleared under the same mutex afterwards).
  void mark_lost(std::int64_t id, casecore::detail::claim_signal& sig) {
    sig.lost = true;
    sig.stop.request_stop();
    std::lock_guard g(slots_m);
    for (std::size_t i = 0; i < slot_job.size(); ++i)
      if (slot_job[i] == id) threads[i].interrupt();
  }

  // True when the claim is certainly held now. Close to the local deadline (or past it) the
  // database decides: a heartbeat of this one claim extends it or reports it lost.
  bool ensure_held(const claim_ref& ref, casecore::detail::claim_signal& sig) {
    if (sig.lost) return false;
    const auto margin = std::max(opt.lease / 10, std::chrono::milliseconds(1));
    if (ns(steady::now() + margin) < sig.held_until_ns.load()) return true;
    for (int tries = 0; tries < 3; ++tries) {
      const auto before = steady::now();
      std::vector<std::int64_t> lost;
      try {
        const auto alive = jobs::heartbeat(db, std::span<const claim_ref>(&ref, 1), opt.lease, &lost);
        if (auto it = alive.find(ref.id); it != alive.end()) {
          extended(sig, before, it->second);
          return true;
        }
      } catch (const std::exception&) {
        return false; // cannot confirm the claim: do not start (it expires and is reclaimed)
      }
      if (!lost.empty()) {
        mark_lost(ref.id, sig);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5)); // its row is locked right now
    }
    return false;
  }

  // --- wake-ups -------------------------------------------------------------------------------

  void wait(std::chrono::milliseconds timeout) {
    if (opt.wait_for_work) return opt.wait_for_work(timeout);
    std::unique_lock g(wake_m);
    const auto seen = wake_seq;
    wake_cv.wait_for(g, timeout, [&] { return wake_seq != seen || stopping.load(); });
  }
  void wake() {
    // Best effort: a transport that cannot reach its server (a PostgreSQL outage) must not make
    // stop() or notify() throw; the waiting threads then wake by themselves within `poll`.
    if (opt.transport) {
      try {
        opt.transport->notify(opt.topic);
      } catch (const std::exception&) {
      }
    }
    if (opt.notify) return opt.notify();
    {
      std::lock_guard g(wake_m);
      ++wake_seq;
    }
    wake_cv.notify_all();
  }

  claim_options claim_opts() const {
    claim_options c;
    c.owner = opt.owner;
    c.batch = opt.batch;
    c.lease = opt.lease;
    c.max_running = opt.max_running;
    c.max_per_key = opt.max_per_key;
    return c;
  }

  // --- start limits -----------------------------------------------------------------------------

  admission admit(const job& j, const claim_ref& ref) {
    std::vector<std::pair<std::string, rate_limiter::limit>> keys;
    for (const auto& l : opt.start_limits)
      if (l.operation == j.operation) keys.emplace_back(start_key(l, j), l.limit);
    if (keys.empty()) return {};
    std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; }); // one lock order
    struct denied {
      std::chrono::microseconds after;
    };
    try {
      return db.write([&](transaction& tx) {
        admission a;
        for (const auto& [key, l] : keys) {
          const auto r = rate_limiter::try_acquire(tx, key, l);
          if (!r.acquired) throw denied{r.retry_after}; // rolls back the tokens taken so far
          a.at = std::max(a.at, r.at);
        }
        check(tx, ref); // last: the job row is locked only from here to the commit
        return a;
      });
    } catch (const denied& d) {
      return {false, d.after, 0};
    }
  }

  // --- running handlers -----------------------------------------------------------------------

  enum class outcome { done, lost, failed };

  outcome run_handler(const stage_handler* handler, job_context& ctx, int slot, std::string& error) {
    const auto id = ctx.current().id;
    if (slot >= 0) {
      std::lock_guard g(slots_m);
      slot_job[static_cast<std::size_t>(slot)] = id;
    }
    outcome result = outcome::done;
    try {
      if (!handler) raise(errc::invalid_argument, "no handler for stage '" + ctx.stage() + "' of '" + ctx.current().operation + "'");
      (*handler)(ctx);
    } catch (const boost::thread_interrupted&) {
      result = outcome::lost; // only mark_lost interrupts handler threads
    } catch (const lease_lost&) {
      result = outcome::lost;
    } catch (const std::exception& e) {
      error = e.what();
      result = outcome::failed;
    } catch (...) {
      error = "unknown exception";
      result = outcome::failed;
    }
    if (slot >= 0) {
      {
        std::lock_guard g(slots_m);
        slot_job[static_cast<std::size_t>(slot)] = 0;
      }
      // An interruption that arrived after the handler's last interruption point must not hit the
      // next job: consume it (no new one can come, the slot is cleared).
      if (boost::this_thread::interruption_requested()) {
        try {
          boost::this_thread::interruption_point();
        } catch (const boost::thread_interrupted&) {
        }
      }
    }
    if (result == outcome::failed && ctx.lost()) result = outcome::lost; // the failure followed the loss
    return result;
  }

  // Runs the job's remaining stages. A last stage whose handler did not call complete() itself is
  // not committed here but appended to `deferred`, so a batch finishes in one transaction.
  void run_job(const job& j, std::vector<stage_done>& deferred, int slot, steady::time_point claimed) {
    const claim_ref ref{j.id, j.lease_epoch};
    const auto sig = signal_of(j.id);
    if (!sig) return;
    auto db_now = [&] {
      return j.heartbeat_at + std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - claimed).count();
    };
    try {
      for (int i = j.current_stage; i < static_cast<int>(j.stages.size()); ++i) {
        if (!ensure_held(ref, *sig)) { // never start a handler whose claim is gone
          bump(&worker_stats::lost);
          break;
        }
        if (sig->cancel) {
          if (acknowledge_cancel(db, ref)) bump(&worker_stats::cancelled);
          break;
        }
        if (stopping && i > j.current_stage) {
          if (release(db, ref)) bump(&worker_stats::released);
          break;
        }
        micros started = db_now();
        if (i == j.current_stage && !opt.start_limits.empty()) {
          const auto a = admit(j, ref); // lease_lost when the claim is gone: no token spent
          if (!a.admitted) {
            // No token free: wait for the oldest one without spending an attempt.
            snooze(db, ref, std::chrono::ceil<std::chrono::milliseconds>(a.retry_after));
            bump(&worker_stats::throttled);
            break;
          }
          started = a.at;
        }
        const auto& stage = j.stages[static_cast<std::size_t>(i)];
        job_context ctx(db, j, i, started, sig);
        ctx.max_output_ = opt.max_output;
        std::string error;
        const auto result = run_handler(find(j.operation, stage), ctx, slot, error);
        if (ctx.snoozed()) { // the claim ended with the snooze, whatever the handler did after it
          if (ctx.completed()) bump(&worker_stats::stages);
          bump(&worker_stats::snoozed);
          break;
        }
        if (result == outcome::lost) {
          bump(&worker_stats::lost);
          if (detail::log_enabled()) detail::emit(log_level::warn, "job.lease_lost", "the claim on a job was lost", {{"db", db.describe()}, {"job", std::to_string(j.id)}, {"operation", j.operation}, {"stage", stage}});
          break;
        }
        if (result == outcome::failed) {
          bump(&worker_stats::failures);
          if (detail::log_enabled()) detail::emit(log_level::error, "job.handler_failed", error, {{"db", db.describe()}, {"job", std::to_string(j.id)}, {"operation", j.operation}, {"stage", stage}, {"attempt", std::to_string(j.attempts)}});
          fail(db, ref, i, error, opt.retry);
          break;
        }
        // A last stage with an output completes on its own: the batch flush writes no outputs.
        if (!ctx.completed() && !ctx.output_ && i + 1 == static_cast<int>(j.stages.size())) {
          deferred.push_back({ref, i, ctx.started_at_});
          return; // stays held (heartbeats continue) until the batch is flushed
        }
        if (!ctx.completed()) ctx.complete([](transaction&) {});
        bump(&worker_stats::stages);
        if (i + 1 == static_cast<int>(j.stages.size())) bump(&worker_stats::succeeded);
        if (ctx.cancel_seen_) sig->cancel = true;
      }
    } catch (const lease_lost&) {
      bump(&worker_stats::lost);
    } catch (const std::exception&) {
      // The database is unreachable or similar: leave the claim to expire, another worker retries it.
    }
    unhold(j.id);
  }

  void flush(std::vector<stage_done>& deferred) {
    if (deferred.empty()) return;
    try {
      const auto outcomes = db.write([&](transaction& tx) { return complete_stages(tx, deferred); });
      for (const auto& o : outcomes) {
        if (!o.held) bump(&worker_stats::lost);
        else {
          bump(&worker_stats::stages);
          if (o.finished) bump(&worker_stats::succeeded);
        }
      }
    } catch (const std::exception&) {
      // Not committed: the claims expire and the last stages run again elsewhere (at-least-once).
    }
    for (const auto& d : deferred) unhold(d.ref.id);
    deferred.clear();
  }

  std::size_t run_batch(int slot) {
    const auto before = steady::now();
    auto batch = claim(db, claim_opts());
    if (batch.empty()) return 0;
    const auto claimed = steady::now();
    // Every job of the batch is held (heartbeated) from now on, not only the one running.
    for (const auto& j : batch) hold(j, before);
    struct unhold_all { // whatever happens below, nothing stays heartbeated past this batch
      state& s;
      const std::vector<job>& b;
      ~unhold_all() {
        for (const auto& j : b) s.unhold(j.id);
      }
    } guard{*this, batch};
    bump(&worker_stats::claimed, batch.size());
    std::vector<stage_done> deferred;
    for (const auto& j : batch) {
      const auto sig = signal_of(j.id);
      int waiting = 0;
      if (!sig || !sig->phase.compare_exchange_strong(waiting, 1)) continue; // drain() handed it back
      if (stopping) { // hand unstarted jobs back at once
        try {
          if (release(db, {j.id, j.lease_epoch})) bump(&worker_stats::released);
        } catch (const std::exception&) {
          // It expires and is reclaimed.
        }
        unhold(j.id);
        continue;
      }
      run_job(j, deferred, slot, claimed);
    }
    flush(deferred);
    return batch.size();
  }

  void thread_main(int slot) {
    // Subscribe before the first claim: the port's contract makes a later notify un-losable.
    auto sub = opt.transport ? opt.transport->subscribe(opt.topic) : nullptr;
    while (!stopping) {
      std::size_t got = 0;
      try {
        got = run_batch(slot);
      } catch (const std::exception&) {
        got = 0; // transient database trouble: back off like an empty queue
      }
      if (got == 0 && !stopping) {
        if (sub) sub->wait(opt.poll);
        else wait(opt.poll);
      }
    }
  }

  // --- drain ----------------------------------------------------------------------------------

  void wake_all() {
    wake();
    {
      std::lock_guard g(wake_m);
      ++wake_seq;
    }
    wake_cv.notify_all();
  }

  // Hands held jobs back to the queue: every job no thread has started (its thread then skips it)
  // and, with `started`, also those whose handler runs (or whose completion is pending): they are
  // released and their handlers told as for a lost claim. Returns how many of the latter were told.
  std::uint64_t hand_back(bool started) {
    struct pick {
      claim_ref ref;
      std::shared_ptr<casecore::detail::claim_signal> sig;
      bool running;
    };
    std::vector<pick> picked;
    {
      std::lock_guard g(held_m);
      for (const auto& [id, h] : held) {
        int phase = 0;
        if (h.second->phase.compare_exchange_strong(phase, 2)) picked.push_back({{id, h.first}, h.second, false});
        else if (started && phase == 1) picked.push_back({{id, h.first}, h.second, true});
      }
    }
    std::uint64_t told = 0;
    for (const auto& p : picked) {
      bool back = false, unknown = false;
      try {
        back = release(db, p.ref); // fenced: false when the stage's completion won the race
      } catch (const std::exception&) {
        unknown = true; // not handed back: the claim expires and is reclaimed
      }
      if (back) bump(&worker_stats::released);
      if (p.running && (back || unknown)) {
        mark_lost(p.ref.id, *p.sig);
        ++told;
      }
      unhold(p.ref.id);
    }
    return told;
  }

  void stop_background() {
    {
      std::lock_guard g(bg_m);
      bg_stop = true;
    }
    bg_cv.notify_all();
    if (heartbeat_thread.joinable()) heartbeat_thread.join();
    if (maintenance_thread.joinable()) maintenance_thread.join();
  }

  // --- background threads ---------------------------------------------------------------------

  // Sleeps one period; false once the background threads must end.
  bool background_sleep(std::chrono::milliseconds d) {
    std::unique_lock g(bg_m);
    bg_cv.wait_for(g, d, [&] { return bg_stop; });
    return !bg_stop;
  }

  void heartbeat_once() {
    std::vector<claim_ref> refs;
    std::map<std::int64_t, std::shared_ptr<casecore::detail::claim_signal>> signals;
    {
      std::lock_guard g(held_m);
      for (const auto& [id, h] : held) {
        refs.push_back({id, h.first});
        signals[id] = h.second;
      }
    }
    if (refs.empty()) return;
    const auto before = steady::now();
    std::vector<std::int64_t> lost;
    const auto alive = jobs::heartbeat(db, refs, opt.lease, &lost);
    for (const auto& [id, cancel] : alive) extended(*signals[id], before, cancel);
    for (auto id : lost) mark_lost(id, *signals[id]);
  }

  void heartbeat_main() {
    while (background_sleep(period())) {
      try {
        heartbeat_once();
      } catch (const std::exception&) {
        // Missed beat: the lease has slack (period = lease / 3); the next one catches up.
      }
    }
  }

  // Reclaims every period; while holding the maintenance lease, prunes every `maintenance` and
  // checks the jobs table's dead rows at most once a second.
  void maintenance_main() {
    auto next_prune = steady::now();
    auto next_vacuum = steady::now();
    auto next_reclaim = steady::now() + period();
    const bool prunes = opt.maintenance.count() > 0 && (opt.retain.max_age.count() > 0 || opt.retain.max_finished > 0);
    const bool vacuums = opt.vacuum_dead_rows > 0 && db.dialect() == dialect::postgresql;
    const auto ttl = maintenance_ttl();
    leader_election leader(db, std::string(maintenance_lease), opt.owner, leader_options{ttl, {}, {}});
    leader_task_clock tasks(opt.leader_tasks.size(), ttl);
    auto wake = opt.schedules.count() > 0 ? std::min(period(), opt.schedules) : period();
    wake = std::min(wake, tasks.wake(opt.leader_tasks));
    while (background_sleep(wake)) {
      run_leader_tasks(leader, tasks);
      if (opt.schedules.count() > 0) {
        // Every worker steps the schedules, not only the maintenance leader: the tick key and the
        // locked cursor make concurrent steps exact (schedule.hpp), and no leader election or lease
        // expiry can delay a tick. Idle cost: one probe of the next_at index per period.
        try {
          if (const auto n = schedules::run_due(db).size()) bump(&worker_stats::scheduled, n);
        } catch (const std::exception&) {
          // Next period; ticks wait in (cursor, now] meanwhile, nothing is lost.
        }
      }
      tick_election(leader, tasks);
      if (steady::now() < next_reclaim) continue;
      next_reclaim = steady::now() + period();
      try {
        // The leader requeues every expired claim; the others only those expired for longer than
        // one lease (reclaim_backstop()): a live leader has taken them long before, so they find
        // nothing, while a dead or stalled leader's duty is covered without waiting for a failover.
        if (const auto n = reclaim_expired(db, leader.is_leader() ? std::chrono::milliseconds(0) : reclaim_backstop())) {
          bump(&worker_stats::reclaimed, n);
          if (detail::log_enabled()) detail::emit(log_level::warn, "job.reclaim", "expired job claims reclaimed", {{"db", db.describe()}, {"owner", opt.owner}, {"jobs", std::to_string(n)}});
        }
      } catch (const std::exception&) {
        // Next period.
      }
      const auto now = steady::now();
      const bool prune_due = prunes && now >= next_prune;
      const bool vacuum_due = vacuums && now >= next_vacuum;
      if (!prune_due && !vacuum_due) continue;
      if (prune_due) next_prune = now + opt.maintenance;
      if (vacuum_due) next_vacuum = now + std::chrono::seconds(1);
      try {
        if (!leader.is_leader()) continue;
        if (vacuum_due && db.vacuum("casecore_jobs", opt.vacuum_dead_rows)) bump(&worker_stats::vacuums);
        // Small batches, checking for stop() between rounds.
        for (; prune_due;) {
          const auto n = prune(db, opt.retain, 500, 5000);
          bump(&worker_stats::pruned, n);
          if (n < 5000 || bg_stopping()) break;
        }
      } catch (const std::exception&) {
        // Next period.
      }
    }
    try {
      leader.resign();
    } catch (const std::exception&) { // the lease expires by itself
    }
  }

  std::chrono::milliseconds maintenance_ttl() const {
    if (opt.leader_ttl.count() > 0) return opt.leader_ttl;
    return std::max(opt.maintenance * 3, std::chrono::milliseconds(3000));
  }

  // When each leader task runs next, and when the election must be renewed for them.
  struct leader_task_clock {
    leader_task_clock(std::size_t n, std::chrono::milliseconds ttl)
        : next(n, steady::now()), renew_every(std::max(ttl / 3, std::chrono::milliseconds(1))), next_renew(steady::now()) {}
    std::vector<steady::time_point> next;
    std::chrono::milliseconds renew_every;
    steady::time_point next_renew;
    std::chrono::milliseconds wake(const std::vector<leader_task>& t) const {
      auto w = renew_every;
      for (const auto& task : t) w = std::min(w, task.period);
      return w;
    }
  };

  // The host's leader tasks: tick the election every leader_ttl / 3 while there are any (renew when
  // leading, campaign otherwise: one short write per third of a term, not one per task run), and
  // run the due ones while this worker leads (with its fence). Never throws: a failure waits.
  // Every worker ticks the maintenance election every leader_ttl / 3: the leader renews, the others
  // campaign (one short write per third of a term), so there is a leader for reclaim, pruning,
  // vacuum and the host's leader tasks whenever a worker runs.
  void tick_election(leader_election& leader, leader_task_clock& clock) {
    const auto now = steady::now();
    if (now < clock.next_renew) return;
    clock.next_renew = now + clock.renew_every;
    try {
      leader.tick();
    } catch (const std::exception&) { // next time; the term lasts until its local expiry
    }
  }

  // How long a claim must have been expired before a worker that is not the maintenance leader
  // requeues it: one lease (the leader requeues within one heartbeat period of expiry).
  std::chrono::milliseconds reclaim_backstop() const { return opt.lease; }

  void run_leader_tasks(leader_election& leader, leader_task_clock& clock) {
    if (opt.leader_tasks.empty()) return;
    tick_election(leader, clock);
    if (!leader.is_leader()) return;
    for (std::size_t i = 0; i < opt.leader_tasks.size() && !bg_stopping(); ++i) {
      if (steady::now() < clock.next[i]) continue;
      const auto f = leader.fence();
      if (!f) return; // the term ended on the local clock: campaign again first
      const auto& task = opt.leader_tasks[i];
      try {
        task.run(db, *f);
      } catch (const std::exception& e) {
        if (detail::log_enabled())
          detail::emit(log_level::error, "leader.task_failed", e.what(), {{"db", db.describe()}, {"owner", opt.owner}, {"task", task.name}});
      } catch (...) {
        if (detail::log_enabled())
          detail::emit(log_level::error, "leader.task_failed", "non-standard exception", {{"db", db.describe()}, {"owner", opt.owner}, {"task", task.name}});
      }
      clock.next[i] = steady::now() + task.period;
    }
  }

  bool bg_stopping() {
    std::lock_guard g(bg_m);
    return bg_stop;
  }
};

worker::worker(database db, worker_options options) {
  if (options.owner.empty()) options.owner = "worker-" + casecore::detail::random_token();
  if (options.owner.size() > 200) raise(errc::invalid_argument, "worker owner longer than 200 characters");
  if (options.threads < 1 || options.threads > 256) raise(errc::invalid_argument, "worker threads must be 1..256");
  if (options.batch == 0 || options.batch > 1000) raise(errc::invalid_argument, "worker batch must be 1..1000");
  if (options.lease.count() <= 0) raise(errc::invalid_argument, "worker lease must be positive");
  if (options.heartbeat.count() < 0) raise(errc::invalid_argument, "worker heartbeat must not be negative");
  if (options.heartbeat >= options.lease) raise(errc::invalid_argument, "worker heartbeat must be shorter than the lease");
  if (options.poll.count() <= 0) raise(errc::invalid_argument, "worker poll interval must be positive");
  if (options.max_running < 0 || options.max_per_key < 0) raise(errc::invalid_argument, "worker limits must not be negative");
  for (std::size_t i = 0; i < options.start_limits.size(); ++i) {
    const auto& l = options.start_limits[i];
    casecore::detail::check_printable(l.operation, "start limit operation", 100);
    if (l.limit.count < 1 || l.limit.count > 100000) raise(errc::invalid_argument, "start limit count must be 1..100000");
    if (l.limit.period.count() <= 0 || l.limit.period > std::chrono::hours(24 * 366))
      raise(errc::invalid_argument, "start limit period must be 1 ms .. 366 days");
    for (std::size_t k = 0; k < i; ++k)
      if (options.start_limits[k].operation == l.operation && options.start_limits[k].per_concurrency_key == l.per_concurrency_key)
        raise(errc::invalid_argument, "two start limits for operation '" + l.operation + "'");
  }
  if (options.max_output == 0 || options.max_output > max_output_limit)
    raise(errc::invalid_argument, "worker max_output must be 1.." + std::to_string(max_output_limit) + " bytes");
  if (options.maintenance.count() < 0) raise(errc::invalid_argument, "worker maintenance period must not be negative");
  if (options.schedules.count() < 0) raise(errc::invalid_argument, "worker schedules period must not be negative");
  if (options.leader_ttl.count() < 0) raise(errc::invalid_argument, "worker leader_ttl must not be negative");
  for (const auto& t : options.leader_tasks) {
    casecore::detail::check_printable(t.name, "leader task name", 100);
    if (t.period.count() <= 0) raise(errc::invalid_argument, "leader task '" + t.name + "' needs a positive period");
    if (!t.run) raise(errc::invalid_argument, "leader task '" + t.name + "' has no function");
  }
  if (options.retain.max_age.count() < 0 || options.retain.max_finished < 0)
    raise(errc::invalid_argument, "worker retention must not be negative");
  state_ = std::make_shared<state>(std::move(db), std::move(options));
}

worker::~worker() {
  try {
    stop();
  } catch (...) {
  }
}

void worker::on_stage(std::string stage, stage_handler h) { on_stage("", std::move(stage), std::move(h)); }

void worker::on_stage(std::string operation, std::string stage, stage_handler h) {
  if (state_->running) raise(errc::invalid_argument, "register handlers before start()");
  if (!h) raise(errc::invalid_argument, "empty stage handler");
  if (stage.empty()) raise(errc::invalid_argument, "empty stage name");
  state_->handlers[{std::move(operation), std::move(stage)}] = std::move(h);
}

void worker::start() {
  auto& s = *state_;
  if (s.running.exchange(true)) return;
  s.stopping = false;
  {
    std::lock_guard g(s.bg_m);
    s.bg_stop = false;
  }
  {
    std::lock_guard g(s.slots_m);
    s.slot_job.assign(static_cast<std::size_t>(s.opt.threads), 0);
  }
  {
    std::lock_guard g(s.live_m);
    s.live = s.opt.threads;
  }
  {
    // mark_lost indexes `threads` under slots_m: build it completely before anyone can.
    std::lock_guard g(s.slots_m);
    s.threads.reserve(static_cast<std::size_t>(s.opt.threads));
    for (int i = 0; i < s.opt.threads; ++i)
      s.threads.emplace_back([&s, i] {
        struct leaving {
          state& s;
          ~leaving() {
            std::lock_guard g(s.live_m);
            --s.live;
            s.live_cv.notify_all();
          }
        } bye{s};
        s.thread_main(i);
      });
  }
  s.heartbeat_thread = boost::thread([&s] { s.heartbeat_main(); });
  s.maintenance_thread = boost::thread([&s] { s.maintenance_main(); });
}

void worker::stop() {
  auto& s = *state_;
  if (!s.running) return;
  s.stopping = true;
  s.wake_all();
  for (auto& t : s.threads)
    if (t.joinable()) t.join(); // drain() may have joined none, or the background threads only
  s.stop_background();
  {
    std::lock_guard g(s.slots_m);
    s.slot_job.clear();
  }
  s.threads.clear();
  s.running = false;
}

drain_result worker::drain(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) raise(errc::invalid_argument, "drain timeout must not be negative");
  auto& s = *state_;
  drain_result r;
  if (!s.running) {
    r.stopped = true;
    return r;
  }
  const auto deadline = steady::now() + timeout;
  const auto before = stats();
  s.stopping = true; // no thread starts another claim
  s.wake_all();
  s.hand_back(false); // at once: another worker may take them while the running handlers go on
  bool idle = false;
  {
    std::unique_lock g(s.live_m);
    idle = s.live_cv.wait_until(g, deadline, [&] { return s.live == 0; });
  }
  if (idle) {
    stop(); // the handler threads have ended: joins them and the background threads
  } else {
    r.interrupted = s.hand_back(true);
    s.stop_background(); // nothing is held any more; stop() joins the told handlers' threads later
  }
  const auto after = stats();
  r.finished = after.stages - before.stages;
  r.succeeded = after.succeeded - before.succeeded;
  r.failed = after.failures - before.failures;
  r.handed_back = after.released - before.released;
  r.stopped = idle;
  return r;
}

void worker::notify() { state_->wake(); }

void notify_after_commit(transaction& tx, std::shared_ptr<task_transport> transport, std::string topic) {
  if (!transport) raise(errc::invalid_argument, "notify_after_commit needs a transport");
  if (!task_transport::valid_topic(topic)) raise(errc::invalid_argument, "invalid transport topic");
  // Through the port's transactional notify: the PostgreSQL transport sends NOTIFY inside `tx`
  // (delivered at commit, dropped on rollback); others notify after commit.
  transport->notify(tx, topic);
  tx.after_commit([keep = std::move(transport)] {}); // the transport outlives the transaction's hooks
}

std::size_t worker::run_once() { return state_->run_batch(-1); }

worker_stats worker::stats() const {
  std::lock_guard g(state_->stats_m);
  return state_->stats;
}

const std::string& worker::owner() const noexcept { return state_->opt.owner; }

} // namespace casecore::jobs
