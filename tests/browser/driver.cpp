// serve_browser_test: `casecore serve` in a real browser (headless Chromium driven by puppeteer-core).
//
// Seeds a scratch database of the selected backend (CASECORE_TEST_BACKEND) with hostile and plain
// jobs (tests/serve_seed.hpp), starts `casecore serve` on a free 127.0.0.1 port, runs
// tests/browser/dashboard_test.mjs, then checks the database: the retried job is queued, the
// cancelled one cancelled, and the job every refused POST aimed at is exactly as seeded.
// Exit 77 (ctest SKIP_RETURN_CODE) with a message when Chromium, Node or puppeteer-core is not
// available; never a silent pass.
//
// Usage: serve_browser_driver --cli CASECORE --script dashboard_test.mjs --package-dir SRC --node-dir BUILD
#include "../serve_process.hpp"
#include "../serve_seed.hpp"

#include <casecore/job_queue_admin.hpp>
#include <casecore/detail/token.hpp>
#include <casecore/testing/fixture.hpp>

#include <sys/file.h>

#include <cstdlib>
#include <iostream>
#include <map>

namespace fs = std::filesystem;
using namespace casecore;

namespace {

constexpr int skip = 77;

std::optional<fs::path> on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const fs::path candidate = fs::path(std::string(rest.substr(0, colon))) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

/// Run argv with this process's stdout / stderr and `env`; returns the exit status.
int run(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> a = args, e = env;
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : e) envp.push_back(s.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  std::cout << std::flush;
  if (posix_spawn(&pid, a[0].c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0) return 127;
  return testing::wait_status(pid);
}

std::string job_text(database& db, std::int64_t id) {
  const auto j = jobs::get(db, id);
  if (!j) return "missing";
  return std::string(jobs::to_string(j->state)) + " attempts=" + std::to_string(j->attempts) + " cancel_requested=" +
         std::to_string(j->cancel_requested) + " run_at=" + std::to_string(j->run_at) + " error=" + j->last_error;
}

} // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  for (const char* need : {"--cli", "--script", "--package-dir", "--node-dir"})
    if (!opt.contains(need)) {
      std::cerr << "usage: serve_browser_driver --cli CASECORE --script FILE.mjs --package-dir SRC --node-dir BUILD\n";
      return 2;
    }

  // Chromium: $CASECORE_CHROMIUM, else Debian's `chromium` on PATH.
  std::optional<fs::path> chromium;
  if (const char* c = std::getenv("CASECORE_CHROMIUM"); c && *c) chromium = fs::path(c);
  else if (!(chromium = on_path("chromium"))) chromium = on_path("chromium-browser");
  if (!chromium || ::access(chromium->c_str(), X_OK) != 0) {
    std::cout << "serve_browser_test: SKIPPED: Chromium not found (apt-get install chromium, or set CASECORE_CHROMIUM)\n";
    return skip;
  }
  const auto node = on_path("node");
  if (!node) {
    std::cout << "serve_browser_test: SKIPPED: node not found (apt-get install nodejs npm)\n";
    return skip;
  }

  // puppeteer-core from the lock file, once per build tree (a lock serialises the backends' runs).
  const fs::path node_dir = opt["--node-dir"], package_dir = opt["--package-dir"];
  fs::create_directories(node_dir);
  {
    const int lock = ::open((node_dir / ".install.lock").c_str(), O_CREAT | O_RDWR, 0600);
    ::flock(lock, LOCK_EX);
    const auto lock_text = testing::read_text_file(package_dir / "package-lock.json");
    const bool installed = fs::exists(node_dir / "node_modules" / "puppeteer-core" / "package.json") &&
                           testing::read_text_file(node_dir / "package-lock.json") == lock_text;
    if (!installed) {
      const auto npm = on_path("npm");
      if (!npm) {
        std::cout << "serve_browser_test: SKIPPED: npm not found and puppeteer-core is not installed in " << node_dir << "\n";
        return skip;
      }
      fs::copy_file(package_dir / "package.json", node_dir / "package.json", fs::copy_options::overwrite_existing);
      fs::copy_file(package_dir / "package-lock.json", node_dir / "package-lock.json", fs::copy_options::overwrite_existing);
      std::cout << "serve_browser_test: npm ci in " << node_dir << "\n";
      if (run({npm->string(), "ci", "--no-audit", "--no-fund", "--prefix", node_dir.string()}, testing::child_environment({})) != 0) {
        fs::remove(node_dir / "package-lock.json");
        std::cout << "serve_browser_test: SKIPPED: `npm ci` failed (offline, and puppeteer-core not installed yet?)\n";
        return skip;
      }
    }
    ::close(lock);
  }

  const std::string token = detail::random_hex(16);
  testing::scratch_database scratch;
  auto db = scratch.open_migrated();
  const auto ids = testing::seed_dashboard(db);
  const auto untouched_before = job_text(db, ids.untouched);
  const auto running_before = job_text(db, ids.running);

  testing::serve_process server(opt["--cli"], scratch.url(), {}, {"CASECORE_OPERATOR_TOKEN=" + token}, scratch.folder());
  if (server.port() == 0) {
    std::cout << "serve_browser_test: FAILED: casecore serve did not start: " << server.err() << "\n";
    return 1;
  }
  const auto base = "http://127.0.0.1:" + std::to_string(server.port());
  std::cout << "serve_browser_test: " << testing::name(scratch.kind()) << ", casecore serve on " << base << ", " << chromium->string() << "\n";

  std::vector<std::string> env = testing::child_environment({
      "CASECORE_BASE_URL=" + base,
      "CASECORE_CHROMIUM=" + chromium->string(),
      "CASECORE_NODE_DIR=" + fs::absolute(node_dir).string(),
      "CASECORE_OPERATOR_TOKEN=" + token,
      "CASECORE_JOB_HOSTILE=" + std::to_string(ids.hostile),
      "CASECORE_JOB_UNTOUCHED=" + std::to_string(ids.untouched),
      "CASECORE_JOB_QUEUED=" + std::to_string(ids.queued),
      "CASECORE_JOB_RUNNING=" + std::to_string(ids.running),
      "CASECORE_HOSTILE_OPERATION=" + testing::hostile_operation,
  });
  const int browser = run({node->string(), opt["--script"]}, env);

  // The database after the browser: what the clicks changed, and what the refused POSTs did not.
  int failures = browser == 0 ? 0 : 1;
  const auto expect = [&](bool ok, const std::string& what) {
    if (!ok) {
      ++failures;
      std::cout << "FAIL (database): " << what << "\n";
    }
  };
  const auto hostile = jobs::get(db, ids.hostile);
  expect(hostile && hostile->state == jobs::job_state::queued, "the retried job is queued: " + job_text(db, ids.hostile));
  expect(hostile && hostile->current_stage == 1, "the retried job resumes at the stage where it failed");
  expect(jobs::get(db, ids.queued)->state == jobs::job_state::cancelled, "the cancelled job is cancelled: " + job_text(db, ids.queued));
  expect(job_text(db, ids.untouched) == untouched_before, "refused POSTs left their job alone: " + job_text(db, ids.untouched));
  expect(job_text(db, ids.running) == running_before, "the running job is untouched: " + job_text(db, ids.running));
  expect(jobs::pauses(db).empty() && jobs::list(db, jobs::job_state::paused, 100).empty(), "the pause was lifted");
  const int stopped = server.stop();
  expect(stopped == 0, "casecore serve exits 0 on SIGTERM (got " + std::to_string(stopped) + "): " + server.err());
  std::cout << "serve_browser_test: " << (failures == 0 ? "passed" : "FAILED") << "\n";
  return failures == 0 ? 0 : 1;
}
