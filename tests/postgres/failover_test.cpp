// Restarts, failover and replicas, on throwaway clusters of the test's own (scripts/pg-cluster.sh):
// a unit of work waits for a restarting server within the reconnect budget; a multi-host URL follows
// a promoted standby with every acknowledged write present; read-only work can use a replica and
// still read its own writes.
#include <casecore/counter.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

using namespace casecore;
using namespace std::chrono_literals;

namespace {

// Runs scripts/pg-cluster.sh and returns its stdout (the URL for start / standby).
std::string cluster_cmd(const std::string& args) {
  const std::string cmd = std::string(CASECORE_SOURCE_DIR) + "/scripts/pg-cluster.sh " + args + " 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 512> buf{};
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    const int rc = ::pclose(p);
    REQUIRE_MESSAGE(rc == 0, "pg-cluster.sh " << args << " failed");
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// A throwaway cluster in a folder of its own, stopped and removed at the end.
struct own_cluster {
  std::filesystem::path dir;
  std::string url;
  explicit own_cluster(const std::filesystem::path& d) : dir(d) {}
  void start() { url = cluster_cmd("start " + dir.string()); }
  void standby_of(const own_cluster& primary) { url = cluster_cmd("standby " + primary.dir.string() + " " + dir.string()); }
  void promote() { cluster_cmd("promote " + dir.string()); }
  void kill() { cluster_cmd("kill " + dir.string()); }
  void restart() { cluster_cmd("restart " + dir.string()); }
  std::string host_port() const { return url.substr(url.find('@') + 1, url.rfind('/') - url.find('@') - 1); }
  ~own_cluster() {
    try {
      cluster_cmd("stop " + dir.string());
    } catch (...) {
    }
  }
};

struct scratch_dir {
  std::filesystem::path path = testing::temp_root() / ("casecore-failover-" + std::to_string(::getpid()) + "-" +
                                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  scratch_dir() { std::filesystem::create_directories(path); }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

} // namespace

TEST_CASE("restart: a unit of work started while the server is down succeeds once it is back") {
  // Regression (many-hosts issue): every unit of work started during a restart failed at once with
  // backend_unavailable instead of waiting for the server.
  scratch_dir d;
  own_cluster pg(d.path / "pg");
  pg.start();
  auto db = casecore::open(pg.url);
  migrate(db);
  CHECK(db.write([](transaction& tx) { return counter::next(tx, "restart"); }) == 1);
  pg.kill();
  std::atomic<bool> done{false};
  std::int64_t got = 0;
  std::exception_ptr failure;
  std::thread writer([&] {
    try {
      got = db.write([](transaction& tx) { return counter::next(tx, "restart"); });
    } catch (...) {
      failure = std::current_exception();
    }
    done = true;
  });
  std::this_thread::sleep_for(1500ms); // the writer is waiting for the server meanwhile
  CHECK_FALSE(done.load());
  pg.start(); // same folder, same port
  writer.join();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      FAIL("the unit of work failed instead of waiting: " << std::string(e.what()));
    }
  }
  CHECK(got == 2);
  CHECK(db.tx_stats().retries_reconnect > 0);
  // A budget of zero fails at once, typed.
  pg.kill();
  write_options now;
  now.reconnect_budget = 0ms;
  CHECK_THROWS_AS(db.write([](transaction& tx) { counter::next(tx, "restart"); }, now), backend_unavailable);
}

TEST_CASE("restart under load: every acknowledged write survives, nothing fails but unknown commits") {
  scratch_dir d;
  own_cluster pg(d.path / "pg");
  pg.start();
  database_options o;
  o.pool.size = 4;
  auto db = casecore::open(pg.url, o);
  migrate(db);
  std::mutex m;
  std::set<std::int64_t> acknowledged;
  std::atomic<int> unknown{0}, other{0};
  std::atomic<bool> stop{false};
  std::thread restarter([&] {
    std::this_thread::sleep_for(400ms);
    pg.restart();
    std::this_thread::sleep_for(400ms);
    stop = true;
  });
  testing::race(4, [&](std::size_t) {
    while (!stop) {
      try {
        const auto n = db.write([](transaction& tx) { return counter::next(tx, "load"); });
        std::lock_guard g(m);
        acknowledged.insert(n);
      } catch (const outcome_unknown&) {
        ++unknown;
      } catch (const std::exception& e) {
        MESSAGE("unexpected: " << std::string(e.what()));
        ++other;
      }
    }
  });
  restarter.join();
  CHECK(other == 0);
  const auto stored = db.read([](transaction& tx) { return counter::current(tx, "load"); });
  for (auto n : acknowledged) CHECK(n <= stored);
  CHECK(static_cast<std::int64_t>(acknowledged.size()) + unknown >= stored); // only unknown commits explain the rest
  MESSAGE("restart under load: " << acknowledged.size() << " acknowledged, " << unknown.load() << " unknown, "
                                 << db.tx_stats().retries_reconnect << " reconnect waits, "
                                 << db.tx_stats().retries_connection << " connection retries");
}

TEST_CASE("failover: a multi-host URL follows the promoted standby; acknowledged writes all survive") {
  scratch_dir d;
  own_cluster primary(d.path / "primary"), standby(d.path / "standby");
  primary.start();
  {
    auto setup = casecore::open(primary.url);
    migrate(setup);
    setup.write([](transaction& tx) { tx.exec_script("CREATE TABLE orders(n BIGINT PRIMARY KEY)"); });
  }
  standby.standby_of(primary);
  const auto url = "postgresql://postgres@" + primary.host_port() + "," + standby.host_port() + "/casecore_test";
  database_options o;
  o.pool.size = 4;
  o.reconnect_budget = 30s;
  auto db = casecore::open(url, o);
  std::mutex m;
  std::set<std::int64_t> acknowledged, jobs_acknowledged;
  std::atomic<int> unknown{0}, other{0};
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> first_write_after_promotion_us{-1};
  std::chrono::steady_clock::time_point promoted_at{};
  std::atomic<bool> promoted{false};
  std::thread orchestrator([&] {
    std::this_thread::sleep_for(600ms);
    primary.kill(); // a crash: in-flight commits are lost or kept, acknowledged ones are on the standby
    std::this_thread::sleep_for(300ms);
    standby.promote();
    promoted_at = std::chrono::steady_clock::now();
    promoted = true;
    std::this_thread::sleep_for(2500ms);
    stop = true;
  });
  testing::race(4, [&](std::size_t t) {
    for (int i = 0; !stop; ++i) {
      try {
        const auto [n, job] = db.write([&](transaction& tx) {
          const auto number = counter::next(tx, "wo");
          tx.exec("INSERT INTO orders(n) VALUES($1)", number);
          jobs::job_spec spec;
          spec.operation = "index";
          spec.subject = "file:" + std::to_string(t) + ":" + std::to_string(i);
          return std::pair(number, jobs::enqueue(tx, spec).id);
        });
        if (promoted) {
          std::int64_t none = -1;
          first_write_after_promotion_us.compare_exchange_strong(
              none, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - promoted_at).count());
        }
        std::lock_guard g(m);
        acknowledged.insert(n);
        jobs_acknowledged.insert(job);
      } catch (const outcome_unknown&) {
        ++unknown;
      } catch (const std::exception& e) {
        MESSAGE("unexpected: " << std::string(e.what()));
        ++other;
      }
    }
  });
  orchestrator.join();
  CHECK(other == 0);
  REQUIRE(first_write_after_promotion_us >= 0); // clients write again after the promotion
  // Everything acknowledged is on the new primary, exactly once.
  auto now_primary = casecore::open(standby.url);
  const auto stored = now_primary.read([](transaction& tx) {
    std::set<std::int64_t> out;
    for (auto r : tx.exec("SELECT n FROM orders")) out.insert(r.get<std::int64_t>(0));
    return out;
  });
  for (auto n : acknowledged) CHECK(stored.count(n) == 1);
  const auto stored_jobs = now_primary.read([](transaction& tx) {
    std::set<std::int64_t> out;
    for (auto r : tx.exec("SELECT id FROM casecore_jobs")) out.insert(r.get<std::int64_t>(0));
    return out;
  });
  std::size_t lost_jobs = 0;
  for (auto id : jobs_acknowledged) lost_jobs += stored_jobs.count(id) == 0;
  CHECK(lost_jobs == 0);
  // Numbers: unique (a primary key), and gapless but for commits whose outcome was unknown.
  const auto top = now_primary.read([](transaction& tx) { return counter::current(tx, "wo"); });
  CHECK(static_cast<std::int64_t>(stored.size()) == top);
  CHECK(stored.size() <= acknowledged.size() + static_cast<std::size_t>(unknown.load()));
  MESSAGE("failover: " << acknowledged.size() << " acknowledged writes, " << unknown.load() << " unknown outcomes, "
                       << "first write " << first_write_after_promotion_us / 1000 << " ms after the promotion, "
                       << db.tx_stats().retries_reconnect << " reconnect waits");
}

TEST_CASE("replicas: read-only work runs on a standby and still reads the caller's own writes") {
  scratch_dir d;
  own_cluster primary(d.path / "primary"), standby(d.path / "standby");
  primary.start();
  {
    auto setup = casecore::open(primary.url);
    setup.write([](transaction& tx) { tx.exec_script("CREATE TABLE notes(id BIGINT PRIMARY KEY, body TEXT)"); });
  }
  standby.standby_of(primary);
  auto db = casecore::open(primary.url + "?replicas=" + standby.host_port());
  write_options replica;
  replica.on_replica = true;
  for (int i = 1; i <= 50; ++i) {
    db.write([&](transaction& tx) { tx.exec("INSERT INTO notes VALUES($1, 'x')", i); });
    // Read-your-writes: the replica has replayed the insert, or the read went to the primary.
    CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM notes"); }, replica) == i);
  }
  const auto stats = db.tx_stats();
  CHECK(stats.replica_reads + stats.replica_fallbacks == 50);
  CHECK(stats.replica_reads > 0); // synchronous replication: replay is usually there at once
  CHECK(db.read([](transaction& tx) { return tx.query_one<bool>("SELECT pg_is_in_recovery()"); }, replica));
  CHECK_FALSE(db.read([](transaction& tx) { return tx.query_one<bool>("SELECT pg_is_in_recovery()"); }));
  // Writes never go to a replica, even when asked.
  CHECK_FALSE(db.write([](transaction& tx) { return tx.query_one<bool>("SELECT pg_is_in_recovery()"); }, replica));
  // A replica that is down: reads fall back to the primary.
  standby.kill();
  const auto before = db.tx_stats().replica_fallbacks;
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM notes"); }, replica) == 50);
  CHECK(db.tx_stats().replica_fallbacks == before + 1);
}

TEST_CASE("a primary URL that reaches only a standby does not take writes: typed, retried until a primary appears") {
  scratch_dir d;
  own_cluster primary(d.path / "primary"), standby(d.path / "standby");
  primary.start();
  standby.standby_of(primary);
  try {
    casecore::open(standby.url);
    FAIL("opened a standby as a primary");
  } catch (const error& e) {
    CHECK(e.code() == errc::backend_unavailable);
    CHECK(std::string(e.what()).find("standby") != std::string::npos);
  }
  // With the standby first in a multi-host URL, libpq's target_session_attrs=read-write picks the primary.
  auto db = casecore::open("postgresql://postgres@" + standby.host_port() + "," + primary.host_port() + "/casecore_test");
  CHECK_FALSE(db.write([](transaction& tx) { return tx.query_one<bool>("SELECT pg_is_in_recovery()"); }));
}
