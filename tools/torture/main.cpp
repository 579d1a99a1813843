// casecore-torture — many processes × threads mixing every casecore primitive against one database
// for a set time, with SIGKILLed workers, injected faults and server restarts; then every invariant
// is checked from the database. Exit status 0 only when every invariant holds. See docs/torture.md.
#include "torture.hpp"

#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>

#include <CLI/CLI.hpp>

#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <list>
#include <optional>
#include <random>
#include <thread>

namespace {

using namespace casecore;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Command-line settings of a run.
struct options {
  std::string db_url;
  std::string scratch;       // "sqlite" / "postgres": run on a throwaway database (CI)
  int processes = 4;
  int threads = 4;
  double seconds = 20;
  double kill_every = 0;     // seconds between SIGKILLs (0 = never)
  double fault_rate = 0;
  std::string restart_cmd;
  double restart_at = 0.5;   // fraction of the run at which the restart command runs
  std::uint64_t seed = 0;
  bool json = false;
  bool keep = false;
  std::string dir;
  std::vector<std::string> hosts; // NETNS=ADDRESS: worker processes spread over these "hosts"
};

/// A host of a --host run: a network namespace and the address PostgreSQL listens on for it.
struct host {
  std::string netns, address;
};

// The URL with its (first) host replaced by `address`, as a worker on that host must use it.
std::string url_on(const std::string& url, const std::string& address) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  auto start = scheme + 3;
  const auto slash = url.find('/', start);
  if (const auto at = url.find('@', start); at != std::string::npos && at < slash) start = at + 1;
  auto end = url.find_first_of(":/,?", start);
  if (end == std::string::npos) end = url.size();
  return url.substr(0, start) + address + url.substr(end);
}

// --- child side ----------------------------------------------------------------------------------

CASECORE_CHILD(torture_worker) {
  torture::worker_config c;
  c.url = args.at(0);
  c.run = args.at(1);
  c.dir = args.at(2);
  c.threads = std::stoi(args.at(3));
  c.deadline_ms = std::stoll(args.at(4));
  c.fault_rate = std::stod(args.at(5));
  c.seed = std::stoull(args.at(6));
  c.index = std::stoi(args.at(7));
  if (args.size() > 8) c.blob_store = args.at(8);
  return torture::run_worker(c);
}

// --- parent side ---------------------------------------------------------------------------------

/// Starts, kills and replaces workers, and reaps them at the end.
class supervisor {
public:
  supervisor(const torture::worker_config& base, std::vector<host> hosts, torture::report& rep)
      : base_(base), hosts_(std::move(hosts)), rep_(rep) {}

  // A new worker; with hosts, the next one in turn: inside its network namespace, in a working
  // folder of its own, reaching PostgreSQL at that host's address.
  void start() {
    auto& c = base_;
    c.index = started_++;
    testing::child_options where;
    auto url = c.url;
    if (!hosts_.empty()) {
      const auto& h = hosts_[static_cast<std::size_t>(c.index) % hosts_.size()];
      where.netns = h.netns;
      where.cwd = (c.dir / ("host-" + h.netns)).string();
      std::filesystem::create_directories(where.cwd);
      url = url_on(c.url, h.address);
      ++rep_.figures["host_starts." + h.netns];
    }
    workers_.emplace_back("torture_worker",
                          std::vector<std::string>{url, c.run, c.dir.string(), std::to_string(c.threads),
                                                   std::to_string(c.deadline_ms), std::to_string(c.fault_rate),
                                                   std::to_string(c.seed), std::to_string(c.index), c.blob_store},
                          where);
  }

  void kill_one(std::mt19937_64& rng) {
    if (workers_.empty()) return;
    const auto i = std::uniform_int_distribution<std::size_t>(0, workers_.size() - 1)(rng);
    auto victim = std::next(workers_.begin(), static_cast<std::ptrdiff_t>(i));
    victim->kill(SIGKILL);
    victim->wait();
    workers_.erase(victim);
    ++rep_.figures["kills"];
    start();
  }

  // Workers stop by themselves at the deadline; one that does not within a minute is hung.
  void reap() {
    const auto hang_limit = base_.deadline_ms + 90000;
    for (auto& w : workers_) {
      while (!exited(w) && now_ms() < hang_limit) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!exited(w)) {
        w.kill(SIGKILL);
        rep_.invariants["workers_hung"] += 1;
        rep_.problems.push_back("worker " + std::to_string(w.pid()) + " did not stop; killed");
      }
      const auto r = w.wait();
      if (r.exit_code != 0 && r.exit_code != 128 + SIGKILL) {
        rep_.invariants["workers_failed"] += 1;
        rep_.problems.push_back("worker " + std::to_string(w.pid()) + " exited with " + std::to_string(r.exit_code));
      }
    }
    rep_.invariants["workers_failed"] += 0;
    rep_.invariants["workers_hung"] += 0;
    rep_.figures["workers_started"] = static_cast<std::uint64_t>(started_);
  }

private:
  static bool exited(testing::child_process& w) {
    // Peek without reaping (WNOWAIT), so child_process::wait() still collects the status.
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(w.pid()), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
  }

  torture::worker_config base_;
  std::vector<host> hosts_;
  torture::report& rep_;
  std::list<testing::child_process> workers_; // not movable-assignable: a list never moves them
  int started_ = 0;
};

// Runs on its own thread; returns the exit status so only the driving thread touches the report.
int run_restart(const std::string& cmd) {
  std::fprintf(stderr, "torture: running restart command: %s\n", cmd.c_str());
  return std::system(cmd.c_str());
}

void record_restart(int rc, torture::report& rep) {
  if (rc == 0) ++rep.figures["restart_commands_run"];
  else {
    rep.invariants["restart_command_failed"] += 1;
    rep.problems.push_back("restart command exited with " + std::to_string(rc));
  }
}

void drive(const options& o, const torture::worker_config& base, torture::report& rep) {
  std::vector<host> hosts;
  for (const auto& h : o.hosts) {
    const auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == h.size()) raise(errc::invalid_argument, "--host wants NETNS=ADDRESS, got '" + h + "'");
    hosts.push_back({h.substr(0, eq), h.substr(eq + 1)});
  }
  supervisor sup(base, std::move(hosts), rep);
  for (int i = 0; i < o.processes; ++i) sup.start();
  std::mt19937_64 rng(o.seed ? o.seed : std::random_device{}());
  const auto start = now_ms();
  const auto restart_at = start + static_cast<std::int64_t>(o.seconds * 1000 * o.restart_at);
  auto next_kill = o.kill_every > 0 ? start + static_cast<std::int64_t>(o.kill_every * 1000) : INT64_MAX;
  bool restarted = o.restart_cmd.empty();
  std::optional<std::thread> restarter;
  int restart_rc = 0;
  // Leave the last second alone: a replacement needs time to start before the deadline.
  while (now_ms() < base.deadline_ms - 1000) {
    if (now_ms() >= next_kill) {
      sup.kill_one(rng);
      next_kill += static_cast<std::int64_t>(o.kill_every * 1000);
    }
    if (!restarted && now_ms() >= restart_at) {
      restarted = true;
      restarter.emplace([&] { restart_rc = run_restart(o.restart_cmd); });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (restarter) {
    restarter->join();
    record_restart(restart_rc, rep);
  }
  sup.reap();
}

void collect_stats(const torture::worker_config& cfg, torture::report& rep) {
  for (const auto& f : std::filesystem::directory_iterator(cfg.dir / "stats")) {
    if (f.path().extension() != ".txt") continue;
    for (const auto& [k, v] : torture::stats::load(f.path())) rep.figures[k] += v;
  }
  rep.invariants["unexpected_errors"] = static_cast<std::int64_t>(rep.figures["errors.unexpected"]);
}

void print(const torture::report& rep, const options& o, const torture::worker_config& cfg, bool json) {
  if (json) {
    std::cout << "{\"run\":\"" << cfg.run << "\",\"ok\":" << (rep.ok() ? "true" : "false") << ",\"figures\":{";
    const char* sep = "";
    for (const auto& [k, v] : rep.figures) std::cout << std::exchange(sep, ",") << "\"" << k << "\":" << v;
    std::cout << "},\"invariants\":{";
    sep = "";
    for (const auto& [k, v] : rep.invariants) std::cout << std::exchange(sep, ",") << "\"" << k << "\":" << v;
    std::cout << "},\"problems\":[";
    sep = "";
    for (const auto& p : rep.problems) {
      std::string q;
      for (char c : p) q += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      std::cout << std::exchange(sep, ",") << "\"" << q << "\"";
    }
    std::cout << "]}\n";
    return;
  }
  std::printf("casecore-torture run %s: %d processes x %d threads x %.0f s, kill every %.1f s, fault rate %.3f\n",
              cfg.run.c_str(), o.processes, o.threads, o.seconds, o.kill_every, o.fault_rate);
  std::printf("\nfigures\n");
  for (const auto& [k, v] : rep.figures)
    if (k.rfind("examples.", 0) != 0) std::printf("  %-44s %12llu\n", k.c_str(), static_cast<unsigned long long>(v));
  std::printf("\ninvariants (violations, all must be 0)\n");
  for (const auto& [k, v] : rep.invariants) std::printf("  %-44s %12lld%s\n", k.c_str(), static_cast<long long>(v), v ? "  <-- BROKEN" : "");
  for (const auto& p : rep.problems) std::printf("  ! %s\n", p.c_str());
  std::printf("\n%s\n", rep.ok() ? "OK: every invariant holds" : "FAILED: invariants broken");
}

std::string random_run_id() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

int run(const options& o) {
  std::optional<testing::scratch_database> scratch;
  torture::worker_config cfg;
  cfg.url = o.db_url;
  if (!o.scratch.empty()) {
    scratch.emplace(o.scratch == "postgres" ? testing::backend_kind::postgres : testing::backend_kind::sqlite);
    cfg.url = scratch->url();
  }
  cfg.run = random_run_id();
  cfg.dir = o.dir.empty() ? testing::temp_root() / ("casecore-torture-" + cfg.run) : std::filesystem::path(o.dir) / cfg.run;
  for (const char* sub : {"ledger", "stats", "blobs"}) std::filesystem::create_directories(cfg.dir / sub);
  cfg.threads = o.threads;
  cfg.fault_rate = o.fault_rate;
  // Hosts share nothing but PostgreSQL: file content goes to the database too.
  if (!o.hosts.empty()) cfg.blob_store = "postgres";
  cfg.seed = o.seed;

  database_options dbo;
  dbo.retry = torture::long_retry();
  auto db = open(cfg.url, dbo);
  torture::setup_run(db, cfg.run);
  cfg.deadline_ms = now_ms() + static_cast<std::int64_t>(o.seconds * 1000);
  std::fprintf(stderr, "torture: run %s on %s, folder %s\n", cfg.run.c_str(), db.describe().c_str(), cfg.dir.c_str());

  torture::report rep;
  drive(o, cfg, rep);
  collect_stats(cfg, rep);
  torture::finish_and_check(db, cfg, rep);
  print(rep, o, cfg, o.json);
  if (!o.keep && rep.ok()) std::filesystem::remove_all(cfg.dir);
  return rep.ok() ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  int status = 0;
  if (testing::run_child_if_requested(argc, argv, status)) return status;

  options o;
  CLI::App app{"casecore-torture: race every casecore primitive from many processes and check the invariants"};
  app.add_option("--db", o.db_url, "Database URL (sqlite:PATH or postgresql://...)");
  app.add_option("--scratch", o.scratch, "Use a throwaway database instead of --db: sqlite, or postgres (in CASECORE_TEST_PG_URL)")
      ->check(CLI::IsMember({"sqlite", "postgres"}));
  app.add_option("--processes,-p", o.processes, "Worker processes")->check(CLI::Range(1, 256));
  app.add_option("--threads,-t", o.threads, "Threads per worker process")->check(CLI::Range(1, 256));
  app.add_option("--seconds,-s", o.seconds, "Duration of the run")->check(CLI::Range(1.0, 86400.0));
  app.add_option("--kill-rate", o.kill_every, "SIGKILL a random worker every N seconds and start a replacement (0 = never)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--fault-rate", o.fault_rate, "Injected busy, serialization and dropped-connection faults, each at this rate per statement")
      ->check(CLI::Range(0.0, 0.3));
  app.add_option("--pg-restart-cmd", o.restart_cmd, "Shell command run mid-run to restart the server (e.g. scripts/pg-cluster.sh restart DIR)");
  app.add_option("--restart-at", o.restart_at, "When to run the restart command, as a fraction of the run")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", o.seed, "Seed of the operation mix and faults (0 = random)");
  app.add_option("--host", o.hosts,
                 "NETNS=ADDRESS (repeatable): run the workers in these network namespaces, reaching PostgreSQL at "
                 "ADDRESS, each in its own working folder, sharing nothing but PostgreSQL (blobs included; "
                 "scripts/hosts-torture.sh sets this up)");
  app.add_option("--dir", o.dir, "Folder for the run's ledgers, stats and blobs (default: a temporary folder)");
  app.add_flag("--keep", o.keep, "Keep the run folder even when every invariant holds");
  app.add_flag("--json", o.json, "Print the report as JSON");
  CLI11_PARSE(app, argc, argv);
  if (o.db_url.empty() == o.scratch.empty()) {
    std::cerr << "casecore-torture: give exactly one of --db URL or --scratch sqlite|postgres\n";
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "casecore-torture: " << e.what() << "\n";
    return 3;
  }
}
