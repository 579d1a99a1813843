// Runs the built `casecore` binary against a scratch database of the selected backend.
#ifdef CASECORE_CLI_PATH

#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

extern char** environ;

using namespace casecore;
using casecore::testing::scratch_database;

namespace {

struct cli_result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A started CLI process whose stdout/stderr go to files.
class cli_process {
public:
  cli_process(const std::vector<std::string>& args, const std::filesystem::path& dir) {
    static std::atomic<int> counter{0};
    const auto tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    out_ = dir / ("cli-" + tag + ".out");
    err_ = dir / ("cli-" + tag + ".err");
    std::vector<std::string> argv_s{CASECORE_CLI_PATH};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
  }
  cli_result wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    cli_result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out_);
    r.err = slurp(err_);
    return r;
  }

private:
  pid_t pid_ = -1;
  std::filesystem::path out_, err_;
};

cli_result cli(const scratch_database& s, std::vector<std::string> args) {
  args.insert(args.begin(), {"--db", s.url()});
  return cli_process(args, s.folder()).wait();
}

} // namespace

TEST_CASE("cli: migrate, then status shows schema versions, pool and table counts") {
  scratch_database s;
  auto r = cli(s, {"migrate"});
  CHECK(r.code == 0);
  CHECK(r.out.find("applied casecore:2 outbox") != std::string::npos);
  CHECK(r.err.empty());
  r = cli(s, {"migrate"});
  CHECK(r.code == 0);
  CHECK(r.out == "schema is up to date\n");

  auto db = s.open();
  db.write([](transaction& tx) { outbox::publish(tx, "mail", "hi"); });
  r = cli(s, {"status"});
  CHECK(r.code == 0);
  CHECK(r.out.find("casecore=" + std::to_string(schema_version(db, "casecore"))) != std::string::npos);
  CHECK(r.out.find("casecore.kit=2") != std::string::npos);
  CHECK(r.out.find("table     casecore_outbox 1\n") != std::string::npos);
  CHECK(r.out.find("pool      capacity=") != std::string::npos);
  r = cli(s, {"status", "--json"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("{\"database\":"));
  CHECK(r.out.find("\"casecore_outbox\":1") != std::string::npos);
  CHECK(r.out.find("\"casecore.kit\":2") != std::string::npos);
}

TEST_CASE("cli: outbox pending and metrics, plain and JSON") {
  scratch_database s;
  auto db = s.open();
  migrate(db);
  db.write([](transaction& tx) {
    for (int i = 0; i < 3; ++i) outbox::publish(tx, "mail", "m" + std::to_string(i));
  });
  auto r = cli(s, {"outbox", "pending", "mail"});
  CHECK(r.code == 0);
  CHECK(r.out == "3\n");
  r = cli(s, {"--json", "outbox", "pending", "mail"});
  CHECK(r.out == "{\"topic\":\"mail\",\"pending\":3}\n");
  r = cli(s, {"metrics"});
  CHECK(r.code == 0);
  CHECK(r.out.find("# TYPE casecore_pool_in_use gauge\n") != std::string::npos);
  CHECK(r.out.find("casecore_table_rows{table=\"casecore_outbox\"} 3\n") != std::string::npos);
  CHECK(r.out.find("casecore_pool_acquire_wait_seconds_bucket{db=\"main\",le=\"+Inf\"}") != std::string::npos);
  r = cli(s, {"metrics", "--json"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("[{\"name\":"));
}

TEST_CASE("cli: errors go to stderr with typed exit codes") {
  scratch_database s;
  auto r = cli(s, {});
  CHECK(r.code == 2); // a subcommand is required
  CHECK_FALSE(r.err.empty());
  r = cli(s, {"frobnicate"});
  CHECK(r.code == 2);
  r = cli(s, {"outbox", "pending"});
  CHECK(r.code == 2); // TOPIC missing
  r = cli_process({"--db", "nosuch://x", "status"}, s.folder()).wait();
  CHECK(r.code == 2);
  CHECK(r.err.find("bad_url") != std::string::npos);
  CHECK(r.out.empty());
  r = cli_process({"--db", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "status"}, s.folder()).wait();
  CHECK(r.code == 3);
  CHECK(r.err.find("backend_unavailable") != std::string::npos);
  r = cli(s, {"outbox", "pending", ""});
  CHECK(r.code == 2);
  CHECK(r.err.find("invalid_argument") != std::string::npos);
  r = cli_process({"--help"}, s.folder()).wait();
  CHECK(r.code == 0);
  CHECK(r.out.find("migrate") != std::string::npos);
}

TEST_CASE("cli: several processes migrate and read at once") {
  scratch_database s;
  std::vector<cli_process> procs;
  for (int i = 0; i < 6; ++i) procs.emplace_back(std::vector<std::string>{"--db", s.url(), "migrate", "--json"}, s.folder());
  int applied_outbox = 0;
  for (auto& p : procs) {
    const auto r = p.wait();
    CHECK(r.code == 0);
    CHECK_MESSAGE(r.err.empty(), r.err);
    if (r.out.find("casecore:2 outbox") != std::string::npos) ++applied_outbox;
  }
  CHECK(applied_outbox == 1); // each migration step applied by exactly one process
  auto db = s.open();
  db.write([](transaction& tx) { outbox::publish(tx, "t", "x"); });
  procs.clear();
  for (int i = 0; i < 6; ++i)
    procs.emplace_back(std::vector<std::string>{"--db", s.url(), i % 2 ? "status" : "metrics"}, s.folder());
  procs.emplace_back(std::vector<std::string>{"--db", s.url(), "outbox", "pending", "t"}, s.folder());
  for (std::size_t i = 0; i < procs.size(); ++i) {
    const auto r = procs[i].wait();
    CHECK(r.code == 0);
    CHECK_MESSAGE(r.err.empty(), r.err);
    if (i + 1 == procs.size()) CHECK(r.out == "1\n");
  }
}

#endif
