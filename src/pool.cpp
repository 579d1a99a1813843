#include <casecore/error.hpp>
#include <casecore/detail/pool.hpp>
#include <casecore/log.hpp>

namespace casecore::detail {

using clock = std::chrono::steady_clock;

pool::pool(std::shared_ptr<backend> b, pool_options options) : backend_(std::move(b)), options_(options) {
  if (options_.size == 0) raise(errc::invalid_argument, "pool size must be at least 1");
}

pool::~pool() = default;

pool::lease& pool::lease::operator=(lease&& o) noexcept {
  if (this != &o) {
    if (owner_ && conn_) owner_->give_back(std::move(conn_), born_);
    owner_ = o.owner_;
    conn_ = std::move(o.conn_);
    born_ = o.born_;
    o.owner_ = nullptr;
  }
  return *this;
}

pool::lease::~lease() {
  if (owner_ && conn_) owner_->give_back(std::move(conn_), born_);
}

void pool::record_wait(clock::duration waited) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(waited).count();
  std::size_t bucket = 0;
  while (bucket < acquire_wait_buckets_us.size() && us > acquire_wait_buckets_us[bucket]) ++bucket;
  ++wait_hist_[bucket];
  wait_sum_us_ += static_cast<std::uint64_t>(us);
}

// Opens a connection for a slot the caller already counted in open_ / in_use_; gives the slot back
// when the connect fails.
pool::lease pool::connect_in_slot(bool replacing) {
  try {
    auto fresh = backend_->connect();
    std::lock_guard g(mutex_);
    if (replacing) ++reconnects_;
    ++opened_;
    return lease(this, std::move(fresh), clock::now());
  } catch (...) {
    std::lock_guard g(mutex_);
    --in_use_;
    --open_;
    freed_.notify_one();
    throw;
  }
}

pool::lease pool::acquire() {
  const auto start = clock::now();
  const auto deadline = start + options_.acquire_timeout;
  const std::size_t capacity = options_.size + options_.overflow;
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!idle_.empty()) {
      // LIFO: the most recently used connection is the warmest and least likely to be stale.
      idle_conn ic = std::move(idle_.back());
      idle_.pop_back();
      ++in_use_;
      record_wait(clock::now() - start);
      ++acquired_;
      lock.unlock();
      const auto now = clock::now();
      bool usable = !ic.conn->broken();
      if (usable && options_.pre_ping && now - ic.returned > options_.pre_ping_after) usable = ic.conn->ping();
      if (usable) return lease(this, std::move(ic.conn), ic.born);
      // Replace the dead connection without giving up our slot.
      ic.conn.reset();
      return connect_in_slot(true);
    }
    if (open_ < capacity) {
      ++open_;
      ++in_use_;
      record_wait(clock::now() - start);
      ++acquired_;
      lock.unlock();
      return connect_in_slot(false);
    }
    ++waiting_;
    const bool woke = freed_.wait_until(lock, deadline, [&] { return !idle_.empty() || open_ < capacity; });
    --waiting_;
    if (!woke) {
      ++timeouts_;
      lock.unlock(); // a sink may use this very pool
      if (log_enabled()) emit(log_level::warn, "pool.timeout", "no database connection became free in time", {{"db", backend_->describe()}, {"capacity", std::to_string(capacity)}, {"timeout_ms", std::to_string(options_.acquire_timeout.count())}});
      raise(errc::pool_timeout, "no database connection became free within " +
                                    std::to_string(options_.acquire_timeout.count()) + " ms (" +
                                    std::to_string(capacity) + " in use)");
    }
  }
}

void pool::give_back(std::unique_ptr<connection> c, clock::time_point born) noexcept {
  const auto now = clock::now();
  std::unique_lock lock(mutex_);
  --in_use_;
  const bool too_old = now - born > options_.recycle_age;
  if (c->broken() || too_old) {
    --open_;
    if (!c->broken()) ++recycled_;
    lock.unlock();
    c.reset(); // close outside the lock
    freed_.notify_one();
    return;
  }
  // An overflow connection is kept while anyone waits (handing it over is far cheaper than closing
  // it and letting the waiter open a new one); it is closed only once the pool has been quiet.
  idle_.push_back({std::move(c), born, now});
  auto surplus = take_surplus(now);
  lock.unlock();
  freed_.notify_one();
  surplus.clear(); // close outside the lock
}

std::vector<std::unique_ptr<connection>> pool::take_surplus(clock::time_point now) {
  std::vector<std::unique_ptr<connection>> out;
  if (waiting_ > 0) return out;
  // The front of idle_ holds the connections returned longest ago (acquire takes from the back).
  while (open_ > options_.size && !idle_.empty() && now - idle_.front().returned >= options_.overflow_idle) {
    out.push_back(std::move(idle_.front().conn));
    idle_.pop_front();
    --open_;
    ++recycled_;
  }
  return out;
}

pool_metrics pool::metrics() const {
  std::lock_guard lock(mutex_);
  pool_metrics m;
  m.capacity = options_.size + options_.overflow;
  m.in_use = in_use_;
  m.idle = idle_.size();
  m.waiting = waiting_;
  m.acquired = acquired_;
  m.timeouts = timeouts_;
  m.opened = opened_;
  m.reconnects = reconnects_;
  m.recycled = recycled_;
  m.acquire_wait = wait_hist_;
  m.acquire_wait_sum_us = wait_sum_us_;
  return m;
}

} // namespace casecore::detail
