#include <casecore/database.hpp>

#include <atomic>
#include <thread>

namespace casecore {

namespace detail {
struct database_state {
  database_state(std::shared_ptr<backend> b, database_options o)
      : backend_ptr(b), options(std::move(o)), pool(std::move(b), options.pool) {}
  std::shared_ptr<detail::backend> backend_ptr;
  database_options options;
  detail::pool pool;
  std::atomic<std::uint64_t> commits{0}, reads{0}, rollbacks{0}, retries_busy{0}, retries_serialization{0},
      retries_deadlock{0}, retries_connection{0}, retries_pool_timeout{0}, outcome_unknown{0}, conflicts{0},
      hook_failures{0};
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
} // namespace

database::database(std::shared_ptr<detail::backend> backend, database_options options)
    : state_(std::make_shared<detail::database_state>(std::move(backend), std::move(options))) {}

casecore::dialect database::dialect() const noexcept { return state_->backend_ptr->dialect(); }
std::string database::describe() const { return state_->backend_ptr->describe(); }
pool_metrics database::pool_stats() const { return state_->pool.metrics(); }
const database_options& database::options() const noexcept { return state_->options; }
void database::count_conflict() const noexcept { state_->conflicts.fetch_add(1, relaxed); }

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
  m.outcome_unknown = s.outcome_unknown.load(relaxed);
  m.conflicts = s.conflicts.load(relaxed);
  m.hook_failures = s.hook_failures.load(relaxed);
  return m;
}

void database::run_hooks(std::vector<std::function<void()>>& hooks) const noexcept {
  for (auto& hook : hooks) {
    try {
      hook();
    } catch (...) {
      state_->hook_failures.fetch_add(1, relaxed);
      if (state_->options.on_hook_error) {
        try {
          state_->options.on_hook_error(std::current_exception());
        } catch (...) { // a failing error callback must not take the others down
        }
      }
    }
  }
  hooks.clear();
}

void database::run_unit(detail::tx_mode mode, const write_options& opts,
                        detail::function_ref<void(transaction&)> body) {
  auto& st = *state_;
  const retry_policy& policy = opts.retry ? *opts.retry : st.options.retry;
  const auto started = std::chrono::steady_clock::now();
  for (int attempt = 1;; ++attempt) {
    std::vector<std::function<void()>> rollback_hooks;
    std::vector<std::function<void()>> commit_hooks;
    try {
      {
        auto conn = st.pool.acquire();
        transaction tx(*this, *conn, mode, attempt, opts.actor);
        conn->begin(mode, opts.level);
        try {
          body(tx);
          if (tx.poisoned())
            raise(errc::backend_error, "a statement failed inside this transaction and its error was swallowed; "
                                       "use transaction::savepoint() to recover from expected errors");
          conn->commit();
        } catch (...) {
          conn->rollback();
          rollback_hooks = std::move(tx.rollback_hooks());
          throw;
        }
        commit_hooks = std::move(tx.commit_hooks());
      } // the connection goes back to the pool before hooks run: hooks may use the database
      (mode == detail::tx_mode::write ? st.commits : st.reads).fetch_add(1, relaxed);
      run_hooks(commit_hooks);
      return;
    } catch (const error& e) {
      st.rollbacks.fetch_add(1, relaxed);
      run_hooks(rollback_hooks);
      if (e.code() == errc::outcome_unknown) st.outcome_unknown.fetch_add(1, relaxed);
      if (e.conflict()) st.conflicts.fetch_add(1, relaxed);
      const bool in_budget = attempt < policy.max_attempts && std::chrono::steady_clock::now() - started < policy.budget;
      if (!e.retryable() || !in_budget) throw;
      count_retry(st, e.code());
      std::this_thread::sleep_for(backoff_delay(policy, attempt + 1));
    } catch (...) {
      st.rollbacks.fetch_add(1, relaxed);
      run_hooks(rollback_hooks);
      throw;
    }
  }
}

} // namespace casecore
