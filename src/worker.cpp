#include <casecore/detail/token.hpp>
#include <casecore/worker.hpp>

#include <boost/thread/thread.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

namespace casecore::jobs {

namespace {
constexpr int flag_cancel = 1;
constexpr int flag_lost = 2;
} // namespace

job_context::job_context(database& db, const job& j, int stage, micros started_at, std::shared_ptr<std::atomic<int>> flags)
    : db_(db), job_(j), stage_(stage), started_at_(started_at), flags_(std::move(flags)) {}

bool job_context::cancel_requested() const noexcept { return cancel_seen_ || (flags_->load() & flag_cancel) != 0; }
bool job_context::lost() const noexcept { return (flags_->load() & flag_lost) != 0; }

void job_context::write(const std::function<void(transaction&)>& f) {
  db_.write([&](transaction& tx) {
    check(tx, ref());
    f(tx);
  });
}

void job_context::complete(const std::function<void(transaction&)>& f) {
  if (completed_) raise(errc::invalid_argument, "stage already completed");
  cancel_seen_ = db_.write([&](transaction& tx) {
    check(tx, ref());
    f(tx);
    complete_stage(tx, ref(), stage_, started_at_);
    return tx.query_one<bool>("SELECT cancel_requested FROM casecore_jobs WHERE id = $1", job_.id);
  });
  completed_ = true;
}

struct worker::state {
  database db;
  worker_options opt;
  std::map<std::pair<std::string, std::string>, stage_handler> handlers; // ("" or operation, stage)

  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};
  std::vector<boost::thread> threads;
  boost::thread heartbeat_thread;

  std::mutex wake_m;
  std::condition_variable wake_cv;
  std::uint64_t wake_seq = 0;

  std::mutex held_m;
  std::map<std::int64_t, std::pair<std::int64_t, std::shared_ptr<std::atomic<int>>>> held; // id -> (epoch, flags)

  mutable std::mutex stats_m;
  worker_stats stats;

  state(database d, worker_options o) : db(std::move(d)), opt(std::move(o)) {}

  void bump(std::uint64_t worker_stats::*field, std::uint64_t n = 1) {
    std::lock_guard g(stats_m);
    stats.*field += n;
  }

  const stage_handler* find(const std::string& operation, const std::string& stage) const {
    if (auto it = handlers.find({operation, stage}); it != handlers.end()) return &it->second;
    if (auto it = handlers.find({"", stage}); it != handlers.end()) return &it->second;
    return nullptr;
  }

  std::shared_ptr<std::atomic<int>> hold(const job& j) {
    auto flags = std::make_shared<std::atomic<int>>(j.cancel_requested ? flag_cancel : 0);
    std::lock_guard g(held_m);
    held[j.id] = {j.lease_epoch, flags};
    return flags;
  }
  void unhold(std::int64_t id) {
    std::lock_guard g(held_m);
    held.erase(id);
  }

  void wait(std::chrono::milliseconds timeout) {
    if (opt.wait_for_work) return opt.wait_for_work(timeout);
    std::unique_lock g(wake_m);
    const auto seen = wake_seq;
    wake_cv.wait_for(g, timeout, [&] { return wake_seq != seen || stopping.load(); });
  }
  void wake() {
    if (opt.transport) opt.transport->notify(opt.topic);
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

  // Runs the job's remaining stages. A last stage whose handler did not call complete() itself is
  // not committed here but appended to `deferred`, so a batch finishes in one transaction.
  void run_job(const job& j, std::vector<stage_done>& deferred) {
    const claim_ref ref{j.id, j.lease_epoch};
    auto flags = hold(j);
    const auto t0 = std::chrono::steady_clock::now();
    auto db_now = [&] {
      return j.heartbeat_at + std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    };
    try {
      for (int i = j.current_stage; i < static_cast<int>(j.stages.size()); ++i) {
        if (flags->load() & flag_lost) throw lease_lost("claim lost");
        if (flags->load() & flag_cancel) {
          if (acknowledge_cancel(db, ref)) bump(&worker_stats::cancelled);
          break;
        }
        if (stopping && i > j.current_stage) {
          if (release(db, ref)) bump(&worker_stats::released);
          break;
        }
        const auto& stage = j.stages[static_cast<std::size_t>(i)];
        const auto* handler = find(j.operation, stage);
        job_context ctx(db, j, i, db_now(), flags);
        try {
          if (!handler) raise(errc::invalid_argument, "no handler for stage '" + stage + "' of '" + j.operation + "'");
          (*handler)(ctx);
          if (!ctx.completed() && i + 1 == static_cast<int>(j.stages.size())) {
            deferred.push_back({ref, i, ctx.started_at_});
            return; // stays held (heartbeats continue) until the batch is flushed
          }
          if (!ctx.completed()) ctx.complete([](transaction&) {});
        } catch (const lease_lost&) {
          throw;
        } catch (const std::exception& e) {
          bump(&worker_stats::failures);
          fail(db, ref, i, e.what(), opt.retry);
          break;
        }
        bump(&worker_stats::stages);
        if (i + 1 == static_cast<int>(j.stages.size())) bump(&worker_stats::succeeded);
        if (ctx.cancel_seen_) flags->fetch_or(flag_cancel);
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

  std::size_t run_batch() {
    auto batch = claim(db, claim_opts());
    bump(&worker_stats::claimed, batch.size());
    std::vector<stage_done> deferred;
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (stopping && k > 0) { // hand unstarted jobs back at once
        if (release(db, {batch[k].id, batch[k].lease_epoch})) bump(&worker_stats::released);
        continue;
      }
      run_job(batch[k], deferred);
    }
    flush(deferred);
    return batch.size();
  }

  void thread_main() {
    // Subscribe before the first claim: the port's contract makes a later notify un-losable.
    auto sub = opt.transport ? opt.transport->subscribe(opt.topic) : nullptr;
    while (!stopping) {
      std::size_t got = 0;
      try {
        got = run_batch();
      } catch (const std::exception&) {
        got = 0; // transient database trouble: back off like an empty queue
      }
      if (got == 0 && !stopping) {
        if (sub) sub->wait(opt.poll);
        else wait(opt.poll);
      }
    }
  }

  void heartbeat_once() {
    std::vector<claim_ref> refs;
    std::map<std::int64_t, std::shared_ptr<std::atomic<int>>> flags;
    {
      std::lock_guard g(held_m);
      for (const auto& [id, h] : held) {
        refs.push_back({id, h.first});
        flags[id] = h.second;
      }
    }
    if (!refs.empty()) {
      std::vector<std::int64_t> lost;
      const auto alive = jobs::heartbeat(db, refs, opt.lease, &lost);
      for (const auto& [id, cancel] : alive)
        if (cancel) flags[id]->fetch_or(flag_cancel);
      for (auto id : lost) flags[id]->fetch_or(flag_lost);
    }
    reclaim_expired(db);
  }

  void heartbeat_main() {
    const auto period = opt.heartbeat.count() > 0 ? opt.heartbeat : opt.lease / 3;
    std::unique_lock g(wake_m);
    while (!stopping) {
      wake_cv.wait_for(g, period, [&] { return stopping.load(); });
      if (stopping) break;
      g.unlock();
      try {
        heartbeat_once();
      } catch (const std::exception&) {
        // Missed beat: the lease has slack (period = lease / 3); the next one catches up.
      }
      g.lock();
    }
  }
};

worker::worker(database db, worker_options options) {
  if (options.owner.empty()) options.owner = "worker-" + detail::random_token();
  if (options.owner.size() > 200) raise(errc::invalid_argument, "worker owner longer than 200 characters");
  if (options.threads < 1 || options.threads > 256) raise(errc::invalid_argument, "worker threads must be 1..256");
  if (options.batch == 0 || options.batch > 1000) raise(errc::invalid_argument, "worker batch must be 1..1000");
  if (options.lease.count() <= 0) raise(errc::invalid_argument, "worker lease must be positive");
  if (options.poll.count() <= 0) raise(errc::invalid_argument, "worker poll interval must be positive");
  if (options.max_running < 0 || options.max_per_key < 0) raise(errc::invalid_argument, "worker limits must not be negative");
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
  for (int i = 0; i < s.opt.threads; ++i) s.threads.emplace_back([&s] { s.thread_main(); });
  s.heartbeat_thread = boost::thread([&s] { s.heartbeat_main(); });
}

void worker::stop() {
  auto& s = *state_;
  if (!s.running) return;
  s.stopping = true;
  s.wake();
  {
    std::lock_guard g(s.wake_m); // the heartbeat thread sleeps on the same condition variable
    ++s.wake_seq;
  }
  s.wake_cv.notify_all();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  s.heartbeat_thread.join();
  s.running = false;
}

void worker::notify() { state_->wake(); }

void notify_after_commit(transaction& tx, std::shared_ptr<task_transport> transport, std::string topic) {
  if (!transport) raise(errc::invalid_argument, "notify_after_commit needs a transport");
  if (!task_transport::valid_topic(topic)) raise(errc::invalid_argument, "invalid transport topic");
  tx.after_commit([t = std::move(transport), topic = std::move(topic)] { t->notify(topic); });
}

std::size_t worker::run_once() { return state_->run_batch(); }

worker_stats worker::stats() const {
  std::lock_guard g(state_->stats_m);
  return state_->stats;
}

const std::string& worker::owner() const noexcept { return state_->opt.owner; }

} // namespace casecore::jobs
