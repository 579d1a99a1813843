// Leases under adversity (issue 10): a holder process whose clock is 30 s off, a holder stopped with
// SIGSTOP past its TTL and then continued, and tiny leases under contention checked from a ledger
// of what every holder did under its token. Runs on SQLite and PostgreSQL.
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

database open_ledger(const scratch_database& s) {
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script(render_sql(tx,
                              "CREATE TABLE IF NOT EXISTS guarded(id {{id}}, token BIGINT NOT NULL, event TEXT NOT NULL,"
                              " who TEXT NOT NULL, at_us BIGINT NOT NULL)"));
  });
  return db;
}

// A write guarded by the lease: the row records the database time of the write.
void guarded_write(database& db, std::string_view name, std::int64_t token, std::string_view event, std::string_view who) {
  db.write([&](transaction& tx) {
    tx.exec("INSERT INTO guarded(token, event, who, at_us) VALUES($1, $2, $3, casecore_now_us())", token, event, who);
    lease::check(tx, name, token);
  });
}

std::int64_t rows_of(database& db, std::string_view who) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM guarded WHERE who = $1", who); });
}

micros db_now(database& db) {
  return db.read([](transaction& tx) { return tx.now_us(); });
}

micros local_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::map<std::string, std::string> parse_kv(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (auto eq = line.find('='); eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  return out;
}

// Run this test binary's child `name` under /usr/bin/faketime with `offset` ("+30s"); returns its stdout.
casecore::testing::child_result run_under_faketime(const std::string& offset, const std::string& name,
                                                   const std::vector<std::string>& args) {
  auto r = casecore::testing::run_skewed_child(offset, name, args);
  return {r.exit_code, std::move(r.out)};
}

// True once process `pid` is stopped (state T in /proc/<pid>/stat); false after `timeout`.
bool wait_stopped(int pid, std::chrono::milliseconds timeout = 20s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    std::string all(512, '\0');
    const int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const auto got = ::read(fd, all.data(), all.size());
    ::close(fd);
    all.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    const auto close = all.rfind(')');
    if (close != std::string::npos && close + 2 < all.size() && all[close + 2] == 'T') return true;
    std::this_thread::sleep_for(2ms);
  }
  return false;
}

const char* lost_or_ok(const std::function<void()>& f) {
  try {
    f();
    return "ok";
  } catch (const lease_lost&) {
    return "lost";
  }
}

} // namespace

// --- skewed clocks -----------------------------------------------------------------------------

// Runs under faketime: every lease decision it asks for must come out as the database clock says.
CASECORE_CHILD(lease_skewed_client) {
  auto db = casecore::open(args.at(0));
  const std::int64_t live_token = std::stoll(args.at(1)), expired_token = std::stoll(args.at(2));
  std::printf("local_us=%lld\n", static_cast<long long>(local_now_us()));
  // A live lease (TTL 20 s on the database clock): not taken, whatever this process believes.
  std::printf("acquire_live=%s\n", lease::try_acquire(db, "skew:live", "skewed", 5s) ? "taken" : "refused");
  std::printf("check_live=%s\n", lost_or_ok([&] { guarded_write(db, "skew:live", live_token, "skewed-live", "skewed"); }));
  // An expired lease (its TTL ran out on the database clock): its token is refused everywhere.
  std::printf("check_expired=%s\n",
              lost_or_ok([&] { guarded_write(db, "skew:expired", expired_token, "skewed-expired", "skewed"); }));
  std::printf("renew_expired=%s\n",
              lost_or_ok([&] { lease::renew(db, lease::grant{"skew:expired", "parent", expired_token, 0}, 10s); }));
  std::printf("release_expired=%s\n",
              lease::release(db, lease::grant{"skew:expired", "parent", expired_token, 0}) ? "released" : "refused");
  // A lease of its own: its expiry is counted on the database clock.
  auto own = lease::try_acquire(db, "skew:own", "skewed", 2s);
  std::printf("own_token=%lld\n", own ? static_cast<long long>(own->token) : -1LL);
  if (own) {
    std::printf("own_expires=%lld\n", static_cast<long long>(own->expires_at));
    const auto renewed = lease::renew(db, *own, 3s);
    std::printf("own_renewed=%lld\n", static_cast<long long>(renewed.expires_at));
  }
  return 0;
}

TEST_CASE("a client whose clock is 30 s ahead or behind changes no lease decision") {
  if (::access("/usr/bin/faketime", X_OK) != 0) {
    FAIL("/usr/bin/faketime is required for the skewed-clock proof (apt-get install faketime)");
  }
  for (const std::string offset : {"+30s", "-30s"}) {
    CAPTURE(offset);
    scratch_database s;
    auto db = open_ledger(s);
    // 20 s: live on the database clock, expired to a client 30 s ahead.
    auto live = lease::try_acquire(db, "skew:live", "parent", 20s);
    auto expired = lease::try_acquire(db, "skew:expired", "parent", 150ms);
    REQUIRE(live);
    REQUIRE(expired);
    std::this_thread::sleep_for(300ms); // skew:expired runs out on the database clock
    const auto before = db_now(db);
    const auto r = run_under_faketime(offset, "lease_skewed_client",
                                      {s.url(), std::to_string(live->token), std::to_string(expired->token)});
    const auto after = db_now(db);
    REQUIRE(r.exit_code == 0);
    auto kv = parse_kv(r.output);
    // The child really saw a skewed clock (else this proves nothing).
    const auto skew = std::stoll(kv["local_us"]) - before;
    if (offset[0] == '+') CHECK(skew > 25'000'000);
    else CHECK(skew < -25'000'000);
    CHECK(kv["acquire_live"] == "refused");
    CHECK(kv["check_live"] == "ok");
    CHECK(kv["check_expired"] == "lost");
    CHECK(kv["renew_expired"] == "lost");
    CHECK(kv["release_expired"] == "refused");
    REQUIRE(kv["own_token"] == "1");
    // Its own lease expires 2 s (then 3 s) after a moment between `before` and `after` on the database clock.
    const auto own_expires = std::stoll(kv["own_expires"]), own_renewed = std::stoll(kv["own_renewed"]);
    CHECK(own_expires >= before + 2'000'000);
    CHECK(own_expires <= after + 2'000'000);
    CHECK(own_renewed >= before + 3'000'000);
    CHECK(own_renewed <= after + 3'000'000);
    CHECK(lease::inspect(db, "skew:live")->owner == "parent");
    CHECK(lease::inspect(db, "skew:live")->token == live->token);
    CHECK(rows_of(db, "skewed") == 1); // only the write under the live token
  }
}

// --- a holder stopped past its TTL ----------------------------------------------------------------

// Acquire, write once, stop itself (SIGSTOP) between transactions; once continued, try everything.
CASECORE_CHILD(lease_stopped_holder) {
  auto db = casecore::open(args.at(0));
  auto g = lease::try_acquire(db, "stop:between", "sleeper", 300ms);
  if (!g) return 4;
  guarded_write(db, g->name, g->token, "before", "sleeper");
  ::raise(SIGSTOP); // the parent keeps it stopped well past the TTL
  int refused = 0;
  for (int i = 0; i < 5; ++i)
    if (std::string(lost_or_ok([&] { guarded_write(db, g->name, g->token, "after", "sleeper"); })) == "lost") ++refused;
  std::printf("refused=%d\n", refused);
  std::printf("renew=%s\n", lost_or_ok([&] { lease::renew(db, *g, 10s); }));
  std::printf("release=%s\n", lease::release(db, *g) ? "released" : "refused");
  return 0;
}

TEST_CASE("a holder stopped past its TTL and continued has every later write refused") {
  for (const bool taken_over : {false, true}) {
    CAPTURE(taken_over);
    scratch_database s;
    auto db = open_ledger(s);
    casecore::testing::child_process child("lease_stopped_holder", {s.url()});
    REQUIRE(wait_stopped(child.pid()));
    std::this_thread::sleep_for(600ms); // twice the TTL, on any clock
    if (taken_over) {
      auto next = lease::acquire(db, "stop:between", "successor", 10s, 5s);
      CHECK(next.token == 2);
      guarded_write(db, next.name, next.token, "successor", "successor");
    }
    child.kill(SIGCONT);
    const auto r = child.wait();
    REQUIRE(r.exit_code == 0);
    auto kv = parse_kv(r.output);
    CHECK(kv["refused"] == "5");
    CHECK(kv["renew"] == "lost");
    CHECK(kv["release"] == "refused");
    CHECK(rows_of(db, "sleeper") == 1); // only the write made before the stop
    CHECK(rows_of(db, "successor") == (taken_over ? 1 : 0));
  }
}

// Stops itself INSIDE a guarded transaction, after check() passed and before COMMIT.
CASECORE_CHILD(lease_stopped_in_tx) {
  auto db = casecore::open(args.at(0));
  auto g = lease::try_acquire(db, "stop:inside", "sleeper", 300ms);
  if (!g) return 4;
  db.write([&](transaction& tx) {
    tx.exec("INSERT INTO guarded(token, event, who, at_us) VALUES($1, 'inside', 'sleeper', casecore_now_us())", g->token);
    lease::check(tx, g->name, g->token);
    ::raise(SIGSTOP); // stopped holding the transaction open, past the TTL
  });
  std::printf("next=%s\n", lost_or_ok([&] { guarded_write(db, g->name, g->token, "after", "sleeper"); }));
  return 0;
}

TEST_CASE("a holder stopped inside a checked write: no successor until it ends, then it is fenced") {
  scratch_database s;
  auto db = open_ledger(s);
  casecore::testing::child_process child("lease_stopped_in_tx", {s.url()});
  REQUIRE(wait_stopped(child.pid()));
  std::this_thread::sleep_for(600ms); // the lease is expired on the database clock
  // If acquire waited for the stopped holder it would wait forever: the watchdog continues the
  // holder after 8 s so the test reports that instead of hanging.
  std::atomic<bool> continued{false};
  const int pid = child.pid();
  std::jthread watchdog([&] {
    for (int i = 0; i < 800 && !continued; ++i) std::this_thread::sleep_for(10ms);
    if (!continued) ::kill(pid, SIGCONT);
  });
  // The stopped holder's write was checked under a live token and may still commit, so nobody may
  // take over before it ends; the wait is bounded by the caller's timeout, not by the holder.
  const auto t0 = std::chrono::steady_clock::now();
  try {
    lease::acquire(db, "stop:inside", "successor", 10s, 300ms);
    FAIL("took over while the stopped holder's checked write was open");
  } catch (const error& e) {
    CHECK(e.code() == errc::timeout);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  continued = true;
  child.kill(SIGCONT);
  const auto r = child.wait();
  REQUIRE(r.exit_code == 0);
  CHECK(parse_kv(r.output)["next"] == "lost"); // its next write, after the expiry, is refused
  auto next = lease::acquire(db, "stop:inside", "successor", 10s, 5s);
  CHECK(next.token == 2);
  db.read([&](transaction& tx) {
    auto rows = tx.exec("SELECT event, at_us FROM guarded WHERE who = 'sleeper'");
    REQUIRE(rows.size() == 1); // the checked write committed; nothing after it
    CHECK(rows[0].get<std::string>(0) == "inside");
    const auto acquired = tx.query_one<micros>("SELECT acquired_at FROM casecore_leases WHERE name = 'stop:inside'");
    CHECK(rows[0].get<micros>(1) < acquired); // ... and it precedes the successor's acquisition
  });
}

// --- tiny leases under contention, proven from a ledger -------------------------------------------

namespace {

void make_tiny_ledger(database& db) {
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE IF NOT EXISTS acq(token BIGINT PRIMARY KEY, owner TEXT NOT NULL, acquired_at BIGINT NOT NULL,"
                   " expires_at BIGINT NOT NULL, older_writes BIGINT NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS ren(token BIGINT NOT NULL, expires_at BIGINT NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS rel(token BIGINT NOT NULL, released_at BIGINT NOT NULL)");
  });
}

struct tiny_figures {
  int acquired = 0, written = 0, refused = 0, renewed = 0, renew_lost = 0, released = 0;
};

// One holder: acquire a 30 ms lease, make 1..4 guarded writes with pauses of 0..40 ms between them
// (often past the TTL), sometimes renew, sometimes release. Every acquisition, renewal and release
// is recorded in the same transaction as the lease statement itself, so the ledger is exact.
tiny_figures tiny_holder(database& db, const std::string& me, std::chrono::milliseconds run_for, unsigned seed) {
  constexpr auto ttl = 30ms;
  std::mt19937 rng(seed);
  tiny_figures f;
  write_options short_wait;
  short_wait.lock_timeout = 50ms;
  short_wait.retry = retry_policy::none();
  const auto until = std::chrono::steady_clock::now() + run_for;
  while (std::chrono::steady_clock::now() < until) {
    std::optional<lease::grant> g;
    try {
      g = db.write([&](transaction& tx) {
        auto got = lease::try_acquire(tx, "tiny", me, ttl);
        if (got)
          // older_writes: the writes under older tokens this acquisition can see. Each statement reads
          // a fresh snapshot (read committed), so a takeover that did not wait for an open checked
          // write misses it here and the ledger check below finds the difference.
          tx.exec("INSERT INTO acq(token, owner, acquired_at, expires_at, older_writes) SELECT token, owner, acquired_at,"
                  " expires_at, (SELECT count(*) FROM guarded WHERE guarded.token < casecore_leases.token) "
                  "FROM casecore_leases WHERE name = 'tiny'");
        return got;
      }, short_wait);
    } catch (const error& e) {
      if (!e.retryable()) throw; // busy: a checked write of the old holder is still open
    }
    if (!g) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      continue;
    }
    ++f.acquired;
    const int writes = 1 + static_cast<int>(rng() % 4);
    bool lost = false;
    for (int w = 0; w < writes && !lost; ++w) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
      try {
        const auto linger = std::chrono::microseconds(rng() % 3000);
        db.write([&](transaction& tx) {
          tx.exec("INSERT INTO guarded(token, event, who, at_us) VALUES($1, 'w', $2, casecore_now_us())", g->token, me);
          lease::check(tx, g->name, g->token);
          std::this_thread::sleep_for(linger); // a commit that takes a while: the fence must cover it
        });
        ++f.written;
      } catch (const lease_lost&) {
        ++f.refused;
        lost = true;
      }
      if (!lost && rng() % 3 == 0) {
        try {
          db.write([&](transaction& tx) {
            g = lease::renew(tx, *g, ttl);
            tx.exec("INSERT INTO ren(token, expires_at) VALUES($1, $2)", g->token, g->expires_at);
          });
          ++f.renewed;
        } catch (const lease_lost&) {
          ++f.renew_lost;
          lost = true;
        }
      }
    }
    if (!lost && rng() % 2 == 0) {
      db.write([&](transaction& tx) {
        if (lease::release(tx, *g)) {
          tx.exec("INSERT INTO rel(token, released_at) VALUES($1, casecore_now_us())", g->token);
          ++f.released;
        }
      });
    }
  }
  return f;
}

std::string figures_text(const tiny_figures& f) {
  return "acquired=" + std::to_string(f.acquired) + "\nwritten=" + std::to_string(f.written) + "\nrefused=" +
         std::to_string(f.refused) + "\nrenewed=" + std::to_string(f.renewed) + "\nrenew_lost=" + std::to_string(f.renew_lost) +
         "\nreleased=" + std::to_string(f.released) + "\n";
}

tiny_figures run_tiny_threads(database& db, const std::string& who, int threads, std::chrono::milliseconds run_for) {
  std::mutex m;
  tiny_figures all;
  casecore::testing::race(static_cast<std::size_t>(threads), [&](std::size_t t) {
    const auto f = tiny_holder(db, who + "." + std::to_string(t), run_for, static_cast<unsigned>(std::random_device{}()));
    std::lock_guard g(m);
    all.acquired += f.acquired, all.written += f.written, all.refused += f.refused;
    all.renewed += f.renewed, all.renew_lost += f.renew_lost, all.released += f.released;
  });
  return all;
}

} // namespace

CASECORE_CHILD(lease_tiny_holders) {
  auto db = casecore::open(args.at(0));
  const auto f = run_tiny_threads(db, "p" + args.back(), 3, std::chrono::milliseconds(std::stoi(args.at(1))));
  std::fputs(figures_text(f).c_str(), stdout);
  return 0;
}

TEST_CASE("tiny leases under contention: tokens strictly increase and at most one holder is live at any moment") {
  scratch_database s;
  auto db = open_ledger(s);
  make_tiny_ledger(db);
  constexpr auto run_for = 2500ms;
  tiny_figures total;
  std::vector<casecore::testing::child_result> kids;
  {
    std::jthread processes([&] { kids = casecore::testing::run_children("lease_tiny_holders", 2, {s.url(), "2500"}); });
    total = run_tiny_threads(db, "t", 4, run_for);
  }
  for (const auto& k : kids) {
    REQUIRE(k.exit_code == 0);
    auto kv = parse_kv(k.output);
    total.acquired += std::stoi(kv["acquired"]), total.written += std::stoi(kv["written"]);
    total.refused += std::stoi(kv["refused"]), total.renewed += std::stoi(kv["renewed"]);
    total.renew_lost += std::stoi(kv["renew_lost"]), total.released += std::stoi(kv["released"]);
  }
  MESSAGE("tiny leases: " << figures_text(total));
  // The adversity really happened: holders were fenced off after pausing past 30 ms.
  CHECK(total.acquired > 20);
  CHECK(total.refused + total.renew_lost > 0);

  struct holding {
    std::string owner;
    micros acquired_at = 0, last_expiry = 0;
    std::optional<micros> released_at;
    std::int64_t older_writes = 0;
  };
  std::map<std::int64_t, holding> by_token;
  db.read([&](transaction& tx) {
    for (auto r : tx.exec("SELECT token, owner, acquired_at, expires_at, older_writes FROM acq ORDER BY token"))
      by_token[r.get<std::int64_t>(0)] =
          holding{r.get<std::string>(1), r.get<micros>(2), r.get<micros>(3), std::nullopt, r.get<std::int64_t>(4)};
    for (auto r : tx.exec("SELECT token, expires_at FROM ren")) {
      auto& h = by_token.at(r.get<std::int64_t>(0));
      h.last_expiry = std::max(h.last_expiry, r.get<micros>(1));
    }
    for (auto r : tx.exec("SELECT token, released_at FROM rel")) by_token.at(r.get<std::int64_t>(0)).released_at = r.get<micros>(1);
  });
  REQUIRE(static_cast<int>(by_token.size()) == total.acquired);
  // Tokens are exactly 1..n (one per acquisition, never reused), in acquisition order, and each
  // holding ended (expired or released) before the next one began.
  std::int64_t expect = 1;
  int violations = 0;
  for (auto it = by_token.begin(); it != by_token.end(); ++it, ++expect) {
    CHECK(it->first == expect);
    auto next = std::next(it);
    if (next == by_token.end()) break;
    const auto& h = it->second;
    const micros end = h.released_at ? *h.released_at : h.last_expiry;
    if (!(next->second.acquired_at > end)) {
      ++violations;
      MESSAGE("token " << next->first << " acquired at " << next->second.acquired_at << " before token " << it->first
                       << " ended at " << end);
    }
  }
  CHECK(violations == 0);
  // Every committed guarded write happened inside its own token's holding, before the next token.
  int writes = 0, misplaced = 0;
  db.read([&](transaction& tx) {
    for (auto r : tx.exec("SELECT token, at_us FROM guarded WHERE event = 'w'")) {
      ++writes;
      const auto t = r.get<std::int64_t>(0);
      const auto w = r.get<micros>(1);
      const auto& h = by_token.at(t);
      bool ok = h.acquired_at <= w && w <= h.last_expiry && (!h.released_at || w < *h.released_at);
      if (auto next = by_token.find(t + 1); next != by_token.end()) ok = ok && w < next->second.acquired_at;
      if (!ok) {
        ++misplaced;
        MESSAGE("write under token " << t << " at " << w << " outside its holding");
      }
    }
  });
  CHECK(writes == total.written);
  CHECK(misplaced == 0);
  // Every write under an older token had committed when a newer token was issued (the fence covers
  // the whole guarded transaction, commit included).
  int late_commits = 0;
  db.read([&](transaction& tx) {
    for (const auto& [token, h] : by_token) {
      const auto committed = tx.query_one<std::int64_t>("SELECT count(*) FROM guarded WHERE event = 'w' AND token < $1", token);
      if (committed != h.older_writes) {
        ++late_commits;
        MESSAGE("token " << token << " was issued while " << committed - h.older_writes << " older write(s) were uncommitted");
      }
    }
  });
  CHECK(late_commits == 0);
}
