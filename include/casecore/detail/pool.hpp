// casecore/detail/pool.hpp — the connection pool itself (internal: hosts use it through
// casecore::database, and configure it with casecore/pool.hpp's pool_options). Its behaviour is
// described in casecore/pool.hpp.
#pragma once

#include <casecore/detail/backend.hpp>
#include <casecore/pool.hpp>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

namespace detail {

/// The pool itself; hosts use it through casecore::database.
class pool {
public:
  pool(std::shared_ptr<backend> backend, pool_options options);
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// A checked-out connection; returns itself to the pool when destroyed.
  class lease {
  public:
    lease() = default;
    lease(pool* owner, std::unique_ptr<connection> c, std::chrono::steady_clock::time_point born)
        : owner_(owner), conn_(std::move(c)), born_(born) {}
    lease(lease&& o) noexcept = default;
    lease& operator=(lease&& o) noexcept;
    ~lease();
    connection& operator*() const { return *conn_; }
    connection* operator->() const { return conn_.get(); }
    explicit operator bool() const { return conn_ != nullptr; }

  private:
    pool* owner_ = nullptr;
    std::unique_ptr<connection> conn_;
    std::chrono::steady_clock::time_point born_;
  };

  /// Check out a connection (pool_timeout after the acquire timeout).
  lease acquire();
  /// Figures now.
  pool_metrics metrics() const;
  /// The options in force.
  const pool_options& options() const noexcept { return options_; }

private:
  struct idle_conn {
    std::unique_ptr<connection> conn;
    std::chrono::steady_clock::time_point born;
    std::chrono::steady_clock::time_point returned;
  };
  void give_back(std::unique_ptr<connection> c, std::chrono::steady_clock::time_point born) noexcept;
  void record_wait(std::chrono::steady_clock::duration waited);
  lease connect_in_slot(bool replacing);
  // Under the lock: remove the idle connections beyond `size` that idled `overflow_idle` while no
  // caller waits; the caller destroys them after unlocking.
  std::vector<std::unique_ptr<connection>> take_surplus(std::chrono::steady_clock::time_point now);

  std::shared_ptr<backend> backend_;
  pool_options options_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::deque<idle_conn> idle_;
  std::size_t open_ = 0;      // idle + in use
  std::size_t in_use_ = 0;
  std::size_t waiting_ = 0;
  std::uint64_t acquired_ = 0, timeouts_ = 0, opened_ = 0, reconnects_ = 0, recycled_ = 0;
  std::array<std::uint64_t, acquire_wait_buckets_us.size() + 1> wait_hist_{};
  std::uint64_t wait_sum_us_ = 0;
};

} // namespace detail

} // namespace casecore

CASECORE_API_END
