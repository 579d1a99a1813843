// quickstart: open an embedded database, migrate, race a few threads through write transactions
// with an after-commit hook, and print what happened and the pool metrics.
//
//   quickstart [--db URL] [--threads N] [--per-thread M]
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  std::string url = "sqlite:quickstart.db";
  int threads = 8, per_thread = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--db")) url = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--per-thread")) per_thread = std::stoi(argv[i + 1]);
  }
  try {
    auto db = casecore::open(url);
    const std::vector<casecore::migration> app{
        {"quickstart", 1, "visits", "CREATE TABLE visits(id INTEGER PRIMARY KEY, n BIGINT NOT NULL)", "", ""}};
    const auto report = casecore::migrate(db, app);
    std::printf("opened %s, applied %zu migration(s)\n", db.describe().c_str(), report.applied.size());
    db.write([](casecore::transaction& tx) {
      tx.exec("INSERT INTO visits(id, n) VALUES(1, 0) ON CONFLICT(id) DO UPDATE SET n = 0");
    });

    // Messages left by earlier runs on the same database are not this run's.
    const auto pending_before = casecore::outbox::pending(db, "visit-recorded");

    // Read-modify-write is only safe because every write is a serialised unit of work that is
    // retried on busy / serialization failures; the after-commit hook counts only committed work.
    std::atomic<int> hooks{0}, rolled_back{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          try {
            casecore::write_options o;
            o.level = casecore::isolation::serializable;
            db.write([&](casecore::transaction& tx) {
              const auto n = tx.query_one<std::int64_t>("SELECT n FROM visits WHERE id = 1");
              tx.exec("UPDATE visits SET n = $1 WHERE id = 1", n + 1);
              if ((t + i) % 10 == 9) throw std::runtime_error("simulated business failure");
              casecore::outbox::publish(tx, "visit-recorded", std::to_string(n + 1));
              tx.after_commit([&] { ++hooks; });
              tx.after_rollback([&] { ++rolled_back; });
            }, o);
          } catch (const std::runtime_error&) {
          }
        }
      });
    }
    for (auto& th : pool) th.join();

    const auto n = db.read([](casecore::transaction& tx) { return tx.query_one<std::int64_t>("SELECT n FROM visits WHERE id = 1"); });
    const auto pending = casecore::outbox::pending(db, "visit-recorded") - pending_before;
    const auto tx = db.tx_stats();
    const auto pool_m = db.pool_stats();
    std::printf("threads=%d x %d units of work (every 10th fails on purpose)\n", threads, per_thread);
    std::printf("committed increments: %lld, after-commit hooks run: %d, outbox messages: %lld\n",
                static_cast<long long>(n), hooks.load(), static_cast<long long>(pending));
    std::printf("transactions: commits=%llu rollbacks=%llu retries busy=%llu serialization=%llu deadlock=%llu\n",
                static_cast<unsigned long long>(tx.commits), static_cast<unsigned long long>(tx.rollbacks),
                static_cast<unsigned long long>(tx.retries_busy), static_cast<unsigned long long>(tx.retries_serialization),
                static_cast<unsigned long long>(tx.retries_deadlock));
    std::printf("pool: capacity=%zu opened=%llu in_use=%zu idle=%zu acquired=%llu timeouts=%llu mean wait=%.1f us\n",
                pool_m.capacity, static_cast<unsigned long long>(pool_m.opened), pool_m.in_use, pool_m.idle,
                static_cast<unsigned long long>(pool_m.acquired), static_cast<unsigned long long>(pool_m.timeouts),
                pool_m.acquired ? static_cast<double>(pool_m.acquire_wait_sum_us) / static_cast<double>(pool_m.acquired) : 0.0);
    const bool ok = n == hooks && n == pending && rolled_back.load() >= 0;
    std::printf("invariant: committed increments == after-commit hooks == outbox messages: %s\n", ok ? "OK" : "BROKEN");
    return ok ? 0 : 1;
  } catch (const casecore::error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 2;
  }
}
