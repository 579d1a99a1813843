#include <casecore/database.hpp>
#include <casecore/detail/pool.hpp>
#include <casecore/detail/repository_identifier.hpp>
#include <casecore/detail/step.hpp>
#include <casecore/detail/tx_duration.hpp>
#include <casecore/log.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

namespace casecore {

namespace detail {
struct database_state final : hook_runner {
  database_state(std::shared_ptr<backend> b, database_options o)
      : backend_ptr(b), options(std::move(o)), pool(b, options.pool) {
    if (auto r = b->read_replicas()) replica_pool = std::make_unique<detail::pool>(std::move(r), options.pool);
    features[&tx_durations_key] = durations; // metrics.cpp reads it through feature_state
  }
  std::shared_ptr<detail::backend> backend_ptr;
  database_options options;
  detail::pool pool;
  std::unique_ptr<detail::pool> replica_pool;        // read-only units of work that ask for a replica
  std::atomic<std::uint64_t> last_commit_position{0}; // for read-your-writes on replicas
  std::atomic<std::uint64_t> replica_reads{0}, replica_fallbacks{0};
  std::atomic<std::uint64_t> commits{0}, reads{0}, rollbacks{0}, retries_busy{0}, retries_serialization{0},
      retries_deadlock{0}, retries_connection{0}, retries_pool_timeout{0}, retries_reconnect{0}, outcome_unknown{0},
      conflicts{0};
  mutable std::atomic<std::uint64_t> hook_failures{0};
  std::mutex features_mutex;
  std::map<const void*, std::shared_ptr<void>> features; // see detail::feature_state
  std::shared_ptr<tx_durations> durations = std::make_shared<tx_durations>();

  void run(std::vector<std::function<void()>>& hooks) const noexcept override;
};
} // namespace detail

namespace {
constexpr auto relaxed = std::memory_order_relaxed;

void count_retry(detail::database_state& st, errc code) {
  switch (code) {
    case errc::busy: st.retries_busy.fetch_add(1, relaxed); break;
    case errc::serialization_failure: st.retries_serialization.fetch_add(1, relaxed); break;
    case errc::deadlock: st.retries_deadlock.fetch_add(1, relaxed); break;
    case errc::connection_lost: st.retries_connection.fetch_add(1, relaxed); break;
    case errc::pool_timeout: st.retries_pool_timeout.fetch_add(1, relaxed); break;
    default: break;
  }
}

// Waits between reconnect attempts: 50 ms doubling to 1 s, so a restart of well under a second
// costs a few short naps and a failover of several seconds is found within a second of it ending.
std::chrono::milliseconds reconnect_delay(int round) {
  return std::chrono::milliseconds(std::min(1000, 50 << std::min(round, 5)));
}
// A connection for this attempt: a replica for reads that asked for one and may use it, else the
// primary. A replica that is unreachable or has not replayed the handle's last commit in time
// sends the read to the primary.
detail::pool::lease acquire_for(detail::database_state& st, detail::tx_mode mode, const write_options& opts) {
  if (mode != detail::tx_mode::read || !opts.on_replica || !st.replica_pool) return st.pool.acquire();
  try {
    auto conn = st.replica_pool->acquire();
    const auto want = opts.read_your_writes ? st.last_commit_position.load(relaxed) : 0;
    const auto deadline = std::chrono::steady_clock::now() + st.options.replica_wait;
    for (;;) {
      if (want == 0 || conn->replayed(want)) {
        st.replica_reads.fetch_add(1, relaxed);
        return conn;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (const error&) { // the replica is down or broken: the primary answers
  }
  st.replica_fallbacks.fetch_add(1, relaxed);
  return st.pool.acquire();
}
} // namespace

void detail::database_state::run(std::vector<std::function<void()>>& hooks) const noexcept {
  for (auto& hook : hooks) {
    try {
      hook();
    } catch (...) {
      hook_failures.fetch_add(1, relaxed);
      if (options.on_hook_error) {
        try {
          options.on_hook_error(std::current_exception());
        } catch (...) { // a failing error callback must not take the others down
        }
      }
    }
  }
  hooks.clear();
}

database::database(std::shared_ptr<detail::backend> backend, database_options options)
    : state_(std::make_shared<detail::database_state>(std::move(backend), std::move(options))) {}

std::shared_ptr<void> detail::feature_state(const database& db, const void* key,
                                            function_ref<std::shared_ptr<void>()> make) {
  auto& st = *db.state_;
  std::lock_guard g(st.features_mutex);
  auto& slot = st.features[key];
  if (!slot) slot = make();
  return slot;
}

casecore::dialect database::dialect() const noexcept { return state_->backend_ptr->dialect(); }
const std::shared_ptr<detail::backend>& database::backend() const noexcept { return state_->backend_ptr; }
std::string database::describe() const { return state_->backend_ptr->describe(); }
bool database::vacuum(std::string_view table, std::int64_t min_dead_rows) {
  detail::check_identifier(table, "table");
  if (min_dead_rows < 0) raise(errc::invalid_argument, "vacuum threshold must not be negative");
  return state_->backend_ptr->vacuum(table, min_dead_rows);
}
pool_metrics database::pool_stats() const { return state_->pool.metrics(); }
const database_options& database::options() const noexcept { return state_->options; }

tx_metrics database::tx_stats() const {
  const auto& s = *state_;
  tx_metrics m;
  m.commits = s.commits.load(relaxed);
  m.reads = s.reads.load(relaxed);
  m.rollbacks = s.rollbacks.load(relaxed);
  m.retries_busy = s.retries_busy.load(relaxed);
  m.retries_serialization = s.retries_serialization.load(relaxed);
  m.retries_deadlock = s.retries_deadlock.load(relaxed);
  m.retries_connection = s.retries_connection.load(relaxed);
  m.retries_pool_timeout = s.retries_pool_timeout.load(relaxed);
  m.retries_reconnect = s.retries_reconnect.load(relaxed);
  m.replica_reads = s.replica_reads.load(relaxed);
  m.replica_fallbacks = s.replica_fallbacks.load(relaxed);
  m.outcome_unknown = s.outcome_unknown.load(relaxed);
  m.conflicts = s.conflicts.load(relaxed);
  m.hook_failures = s.hook_failures.load(relaxed);
  return m;
}

void database::run_unit(detail::tx_mode mode, const write_options& opts,
                        detail::function_ref<void(transaction&)> body) {
  auto& st = *state_;
  const retry_policy& policy = opts.retry ? *opts.retry : st.options.retry;
  const auto reconnect_budget = opts.reconnect_budget ? *opts.reconnect_budget : st.options.reconnect_budget;
  const detail::tx_settings settings{mode, opts.level, opts.lock_timeout, opts.statement_timeout};
  const auto started = std::chrono::steady_clock::now();
  // Every unit of work, however it ends, lands in the duration histogram (retries included).
  struct record_duration {
    detail::tx_durations::series& s;
    std::chrono::steady_clock::time_point from;
    ~record_duration() {
      s.observe(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - from).count());
    }
  } const recorder{mode == detail::tx_mode::write ? st.durations->write : st.durations->read, started};
  std::optional<std::chrono::steady_clock::time_point> unreachable_since;
  int reconnect_round = 0;
  // `attempt` counts the attempts that reached the server; waiting for it to come back does not
  // spend the retry policy's attempts.
  for (int attempt = 1;;) {
    std::vector<std::function<void()>> rollback_hooks;
    std::vector<std::function<void()>> commit_hooks;
    try {
      {
        auto conn = acquire_for(st, mode, opts);
        unreachable_since.reset();
        reconnect_round = 0;
        conn->begin(settings);
        transaction tx(*conn, mode, attempt, opts.actor, st);
        try {
          detail::step("tx.begun");
          body(tx);
          if (tx.poisoned())
            raise(errc::backend_error, "a statement failed inside this transaction and its error was swallowed; "
                                       "use transaction::savepoint() to recover from expected errors");
          detail::step("tx.before_commit");
          conn->commit();
          if (st.replica_pool && mode == detail::tx_mode::write)
            if (const auto pos = conn->commit_position()) {
              auto seen = st.last_commit_position.load(relaxed);
              while (*pos > seen && !st.last_commit_position.compare_exchange_weak(seen, *pos, relaxed)) {
              }
            }
        } catch (...) {
          conn->rollback();
          rollback_hooks = std::move(tx.rollback_hooks());
          throw;
        }
        commit_hooks = std::move(tx.commit_hooks());
      } // the connection goes back to the pool before hooks run: hooks may use the database
      (mode == detail::tx_mode::write ? st.commits : st.reads).fetch_add(1, relaxed);
      st.run(commit_hooks);
      return;
    } catch (const error& e) {
      st.rollbacks.fetch_add(1, relaxed);
      if (e.code() == errc::outcome_unknown) {
        // It may have committed: neither the rollback hooks nor a retry are safe.
        st.outcome_unknown.fetch_add(1, relaxed);
        if (detail::log_enabled()) detail::emit(log_level::error, "tx.outcome_unknown", e.what(), {{"db", st.backend_ptr->describe()}, {"attempt", std::to_string(attempt)}});
        throw;
      }
      st.run(rollback_hooks);
      if (e.conflict()) st.conflicts.fetch_add(1, relaxed);
      if (e.code() == errc::backend_unavailable) {
        const auto now = std::chrono::steady_clock::now();
        if (!unreachable_since) unreachable_since = now;
        if (now - *unreachable_since >= reconnect_budget) throw;
        st.retries_reconnect.fetch_add(1, relaxed);
        const auto nap = std::min<std::chrono::steady_clock::duration>(reconnect_delay(reconnect_round++),
                                                                       *unreachable_since + reconnect_budget - now);
        std::this_thread::sleep_for(nap);
        continue;
      }
      const bool in_budget = attempt < policy.max_attempts && std::chrono::steady_clock::now() - started < policy.budget;
      if (!e.retryable() || !in_budget) throw;
      count_retry(st, e.code());
      if (detail::log_enabled()) detail::emit(log_level::warn, "tx.retry", e.what(), {{"db", st.backend_ptr->describe()}, {"cause", std::string(to_string(e.code()))}, {"attempt", std::to_string(attempt)}});
      ++attempt;
      std::this_thread::sleep_for(backoff_delay(policy, attempt));
    } catch (...) {
      st.rollbacks.fetch_add(1, relaxed);
      st.run(rollback_hooks);
      throw;
    }
  }
}

} // namespace casecore
