// The pool's own logic, driven by an in-process connection factory so exclusivity, limits, timeouts
// and reconnects can be observed exactly. The backends' real behaviour is covered by
// transaction_test on SQLite and PostgreSQL.
#include <casecore/detail/pool.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;

namespace {

struct probe_connection final : detail::connection {
  explicit probe_connection(std::atomic<int>& live) : live_(live) { ++live_; }
  ~probe_connection() override { --live_; }
  result exec(std::string_view, std::span<const value>) override { return {}; }
  void exec_script(std::string_view) override {}
  void begin(const detail::tx_settings&) override {}
  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  const sql_fragments& sql() const noexcept override {
    static const sql_fragments none{}; // runs no SQL
    return none;
  }
  void commit() override {}
  void rollback() noexcept override {}
  bool ping() noexcept override { return !dead; }
  bool broken() const noexcept override { return false; }
  std::atomic<int> users{0};
  bool dead = false;
  std::atomic<int>& live_;
};

struct probe_backend final : detail::backend {
  std::unique_ptr<detail::connection> connect() override {
    if (refuse) raise(errc::backend_unavailable, "refused");
    ++connects;
    return std::make_unique<probe_connection>(live);
  }
  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  std::string describe() const override { return "probe"; }
  std::atomic<int> connects{0};
  std::atomic<int> live{0};
  std::atomic<bool> refuse{false};
};

} // namespace

TEST_CASE("the pool never hands one connection to two threads and respects its capacity") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 3;
  o.overflow = 2;
  o.overflow_idle = 0ms; // surplus connections close as soon as nobody waits
  detail::pool p(backend, o);
  std::atomic<int> max_in_use{0}, double_use{0};
  testing::race(16, [&](std::size_t) {
    for (int i = 0; i < 200; ++i) {
      auto lease = p.acquire();
      auto& c = static_cast<probe_connection&>(*lease);
      if (c.users.fetch_add(1) != 0) ++double_use;
      const int now = static_cast<int>(p.metrics().in_use);
      int seen = max_in_use.load();
      while (now > seen && !max_in_use.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::yield();
      c.users.fetch_sub(1);
    }
  });
  CHECK(double_use == 0);
  CHECK(max_in_use <= 5);
  const auto m = p.metrics();
  CHECK(m.acquired == 16 * 200);
  CHECK(m.in_use == 0);
  CHECK(m.idle <= 3); // the last returns found no waiter and closed the surplus
  CHECK(backend->live == static_cast<int>(m.idle));
  std::uint64_t hist = 0;
  for (auto n : m.acquire_wait) hist += n;
  CHECK(hist == m.acquired);
}

TEST_CASE("a caller that finds no free connection gets a retryable pool_timeout") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 0;
  o.acquire_timeout = 30ms;
  detail::pool p(backend, o);
  auto held = p.acquire();
  try {
    (void)p.acquire();
    FAIL("acquired a second connection from a pool of one");
  } catch (const error& e) {
    CHECK(e.code() == errc::pool_timeout);
    CHECK(e.retryable());
  }
  CHECK(p.metrics().timeouts == 1);
  CHECK(p.metrics().waiting == 0);
}

TEST_CASE("a waiting caller gets the connection as soon as it is returned") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 0;
  detail::pool p(backend, o);
  auto held = std::make_unique<detail::pool::lease>(p.acquire());
  std::thread t([&] { auto l = p.acquire(); });
  while (p.metrics().waiting == 0) std::this_thread::yield();
  held.reset();
  t.join();
  CHECK(p.metrics().acquired == 2);
  CHECK(backend->connects == 1);
}

TEST_CASE("a dead idle connection is pinged, replaced and counted as a reconnect") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 0;
  o.pre_ping_after = 0ms;
  detail::pool p(backend, o);
  {
    auto l = p.acquire();
    static_cast<probe_connection&>(*l).dead = true;
  }
  std::this_thread::sleep_for(1ms);
  auto l = p.acquire();
  CHECK_FALSE(static_cast<probe_connection&>(*l).dead);
  CHECK(p.metrics().reconnects == 1);
  CHECK(backend->connects == 2);
}

TEST_CASE("a failed connect gives the slot back") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 0;
  o.acquire_timeout = 20ms;
  detail::pool p(backend, o);
  backend->refuse = true;
  CHECK_THROWS_AS(p.acquire(), backend_unavailable);
  backend->refuse = false;
  auto l = p.acquire(); // would time out if the failed attempt had leaked its slot
  CHECK(p.metrics().in_use == 1);
}

TEST_CASE("an overflow connection returned while a caller waits is handed over, not closed and reopened") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 1;
  o.overflow_idle = 0ms; // even with no idle delay, a waiter keeps the connection alive
  detail::pool p(backend, o);
  auto base = p.acquire();
  auto overflow = std::make_unique<detail::pool::lease>(p.acquire());
  const auto* overflow_conn = &**overflow;
  const detail::connection* got = nullptr;
  std::thread waiter([&] {
    auto l = p.acquire();
    got = &*l;
  });
  while (p.metrics().waiting == 0) std::this_thread::yield();
  overflow.reset();
  waiter.join();
  CHECK(got == overflow_conn);
  CHECK(backend->connects == 2);
  CHECK(p.metrics().recycled == 1); // closed when the waiter returned it and nobody else waited
}

TEST_CASE("32 callers on a pool of 8 + 4 do not churn connections") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o; // defaults: size 8, overflow 4, overflow_idle 1 s
  detail::pool p(backend, o);
  testing::race(32, [&](std::size_t) {
    for (int i = 0; i < 200; ++i) {
      auto lease = p.acquire();
      std::this_thread::yield();
    }
  });
  // The old pool closed each returned overflow connection: thousands of connects here.
  CHECK(backend->connects <= 12);
  CHECK(p.metrics().acquired == 32 * 200);
  CHECK(backend->live == static_cast<int>(p.metrics().idle));
}

TEST_CASE("overflow connections close once they idled the configured time with nobody waiting") {
  auto backend = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 1;
  o.overflow = 2;
  o.overflow_idle = 20ms;
  detail::pool p(backend, o);
  {
    auto a = p.acquire();
    auto b = p.acquire();
    auto c = p.acquire();
    CHECK(backend->live == 3);
  }
  // Returned just now: kept for a while, as more load may follow.
  CHECK(backend->live == 3);
  CHECK(p.metrics().idle == 3);
  std::this_thread::sleep_for(40ms);
  { auto a = p.acquire(); } // the next return closes what idled past the delay
  CHECK(backend->live == 1);
  CHECK(p.metrics().idle == 1);
  CHECK(p.metrics().recycled == 2);
}

TEST_CASE("a pool of size 0 is refused before it connects") {
  auto b = std::make_shared<probe_backend>();
  pool_options o;
  o.size = 0;
  CHECK_THROWS_AS([&] { detail::pool p(b, o); }(), invalid_argument);
  CHECK(b->connects == 0);
}
