// Runs the built `casecore` binary against a scratch database of the selected backend.
#ifdef CASECORE_CLI_PATH

#include <casecore/counter.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/rate_limiter.hpp>
#include <casecore/outbox.hpp>
#include <casecore/url.hpp>
#include <casecore/version.hpp>
#include <casecore/worker.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <numeric>
#include <sstream>

extern char** environ;

using namespace casecore;
using casecore::testing::scratch_database;
using namespace std::chrono_literals;

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
  cli_process(const std::vector<std::string>& args, const std::filesystem::path& dir)
      : cli_process(CASECORE_CLI_PATH, args, dir) {}
  /// Run `program` (the CLI, or /bin/sh driving it) with `args`.
  cli_process(const std::string& program, const std::vector<std::string>& args, const std::filesystem::path& dir) {
    static std::atomic<int> counter{0};
    const auto tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    out_ = dir / ("cli-" + tag + ".out");
    err_ = dir / ("cli-" + tag + ".err");
    std::vector<std::string> argv_s{program};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
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

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
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
  auto db = s.open_migrated();
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
  // Database-wide figures only: the CLI's own pool says nothing about the deployment (issue 13).
  CHECK(r.out.find("# TYPE casecore_outbox_messages gauge\n") != std::string::npos);
  CHECK(r.out.find("casecore_outbox_messages{topic=\"mail\"} 3\n") != std::string::npos);
  CHECK(r.out.find("casecore_build_info{version=\"" CASECORE_VERSION "\",backend=\"") != std::string::npos);
  CHECK(r.out.find("casecore_pool_") == std::string::npos);
  r = cli(s, {"metrics", "--json"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("[{\"name\":"));
}

TEST_CASE("cli: errors go to stderr with typed exit codes") {
  scratch_database s;
  s.open(); // the database exists (only migrate creates a missing SQLite file)
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
#ifdef CASECORE_WITH_POSTGRES
  CHECK(r.code == 3);
  CHECK(r.err.find("backend_unavailable") != std::string::npos);
#else // built without PostgreSQL: refused as unsupported before any connection attempt
  CHECK(r.code == 2);
  CHECK(r.err.find("unsupported") != std::string::npos);
#endif
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

TEST_CASE("cli: counter next and show, plain and JSON") {
  scratch_database s;
  auto db = s.open_migrated();
  auto r = cli(s, {"counter", "next", "wo", "--scope", "2025"});
  CHECK(r.code == 0);
  CHECK(r.out == "1\n");
  CHECK(r.err.empty());
  r = cli(s, {"counter", "next", "wo", "--scope", "2025", "--format", "WO-{scope}-{n:05}"});
  CHECK(r.out == "WO-2025-00002\n");
  r = cli(s, {"--json", "counter", "next", "wo", "--scope", "2025", "--format", "WO-{n}"});
  CHECK(r.out == "{\"name\":\"wo\",\"scope\":\"2025\",\"number\":3,\"formatted\":\"WO-3\"}\n");
  r = cli(s, {"counter", "next", "inv", "--json"});
  CHECK(r.out == "{\"name\":\"inv\",\"scope\":\"\",\"number\":1}\n");
  db.read([](transaction& tx) { CHECK(counter::current(tx, "wo", "2025") == 3); });

  r = cli(s, {"counter", "show"});
  CHECK(r.code == 0);
  CHECK(r.out == "name\tscope\tvalue\ninv\t\t1\nwo\t2025\t3\n");
  r = cli(s, {"counter", "show", "wo", "--json"});
  CHECK(r.out == "[{\"name\":\"wo\",\"scope\":\"2025\",\"value\":3}]\n");
  r = cli(s, {"counter", "show", "--scope", ""});
  CHECK(r.out == "name\tscope\tvalue\ninv\t\t1\n");
  r = cli(s, {"counter", "show", "wo", "--scope", "2024"});
  CHECK(r.code == 4);
  CHECK(has(r.err, "[not_found]"));
  CHECK(r.out.empty());
  r = cli(s, {"counter", "show", "nope"});
  CHECK(r.code == 4);

  // Bad input: typed error, exit 2, no number burnt.
  r = cli(s, {"counter", "next", ""});
  CHECK(r.code == 2);
  CHECK(has(r.err, "[invalid_argument]"));
  r = cli(s, {"counter", "next", "wo", "--scope", "2025", "--format", "{bogus}"});
  CHECK(r.code == 2);
  r = cli(s, {"counter", "next", std::string(129, 'x')});
  CHECK(r.code == 2);
  r = cli(s, {"counter"});
  CHECK(r.code == 2);
  db.read([](transaction& tx) { CHECK(counter::current(tx, "wo", "2025") == 3); });
}

TEST_CASE("cli: counter next from 8 processes at once is unique and gapless") {
  scratch_database s;
  auto db = s.open_migrated();
  constexpr int procs = 8, per = 8;
  // Each shell runs the CLI `per` times back to back, so the 8 streams overlap for their whole run.
  const std::string loop = "i=0; while [ $i -lt " + std::to_string(per) +
                           " ]; do \"$0\" --db \"$1\" counter next wo --scope 2025 || exit 1; i=$((i+1)); done";
  std::vector<cli_process> running;
  for (int p = 0; p < procs; ++p)
    running.emplace_back("/bin/sh", std::vector<std::string>{"-c", loop, CASECORE_CLI_PATH, s.url()}, s.folder());
  std::vector<std::int64_t> numbers;
  for (auto& p : running) {
    const auto r = p.wait();
    CHECK(r.code == 0);
    CHECK_MESSAGE(r.err.empty(), r.err);
    for (const auto& l : lines(r.out)) numbers.push_back(std::stoll(l));
  }
  REQUIRE(numbers.size() == static_cast<std::size_t>(procs * per));
  std::sort(numbers.begin(), numbers.end());
  std::vector<std::int64_t> expected(numbers.size());
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(numbers == expected); // no repeat, no gap
  db.read([&](transaction& tx) { CHECK(counter::current(tx, "wo", "2025") == procs * per); });
}

TEST_CASE("cli: file register and list, plain and JSON") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto upload = s.folder() / "report.pdf";
  std::ofstream(upload) << "hello";
  const auto blobs = (s.folder() / "blobs").string();
  auto r = cli(s, {"file", "register", "case-1", upload.string(), "--blobs", blobs, "--actor", "alice"});
  CHECK(r.code == 0);
  CHECK_MESSAGE(r.err.empty(), r.err);
  const std::string sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  CHECK(r.out == "registered 1 " + sha + "\n");
  CHECK(std::filesystem::exists(std::filesystem::path(blobs) / "objects" / sha.substr(0, 2) / sha));
  r = cli(s, {"file", "register", "case-1", upload.string(), "--blobs", blobs, "--actor", "bob"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("duplicate 1 " + sha + "\nfirst registered by alice at "));
  r = cli(s, {"--json", "file", "register", "case-1", upload.string(), "--blobs", blobs, "--name", "copy.pdf"});
  CHECK(r.code == 0);
  // A new name for the same content is a new row (ids need not be dense: the duplicate's insert used one up).
  CHECK(r.out.starts_with("{\"status\":\"registered\",\"id\":"));
  CHECK(has(r.out, ",\"sha256\":\"" + sha + "\",\"size\":5,\"registered_by\":\"cli"));

  r = cli(s, {"file", "list", "case-1"});
  CHECK(r.code == 0);
  auto rows = lines(r.out);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == "id\tsha256\tsize\tname\tregistered_by\tregistered_at");
  CHECK(rows[1].starts_with("1\t" + sha + "\t5\treport.pdf\talice\t20"));
  CHECK(has(rows[2], "\t" + sha + "\t5\tcopy.pdf\t"));
  r = cli(s, {"file", "list", "case-1", "--json"});
  CHECK(r.out.starts_with("[{\"id\":1,\"case\":\"case-1\",\"name\":\"report.pdf\",\"sha256\":\"" + sha + "\",\"size\":5,\"registered_by\":\"alice\""));
  r = cli(s, {"file", "list", "case-2", "--json"});
  CHECK(r.out == "[]\n");

  r = cli(s, {"file", "register", "case-1", (s.folder() / "missing").string(), "--blobs", blobs});
  CHECK(r.code == 4);
  CHECK(has(r.err, "[not_found]"));
  r = cli(s, {"file", "register", "", upload.string(), "--blobs", blobs});
  CHECK(r.code == 2);
  r = cli(s, {"file", "register", "case-1", upload.string(), "--blobs", blobs, "--name", "bad\nname"});
  CHECK(r.code == 2);
  r = cli(s, {"file", "register", "case-1"});
  CHECK(r.code == 2);
  CHECK(db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_files"); }) == 2);

  if (s.kind() == casecore::testing::backend_kind::sqlite) {
    // Default blob folder: <stem>.blobs beside the SQLite file.
    r = cli(s, {"file", "register", "case-3", upload.string()});
    CHECK(r.code == 0);
    const auto db_file = std::filesystem::path(parse_url(s.url()).target);
    CHECK(std::filesystem::exists(db_file.parent_path() / (db_file.stem().string() + ".blobs") / "objects" / sha.substr(0, 2) / sha));
  }
}

TEST_CASE("cli: lease list and release, by holder and forced") {
  scratch_database s;
  auto db = s.open_migrated();
  auto a = lease::try_acquire(db, "case:1:reindex", "alice", 60s);
  auto b = lease::try_acquire(db, "case:2:reindex", "bob", 60s);
  REQUIRE(a);
  REQUIRE(b);
  auto r = cli(s, {"lease", "list"});
  CHECK(r.code == 0);
  auto rows = lines(r.out);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == "name\towner\ttoken\theld\texpires_at\tacquired_at");
  CHECK(rows[1].starts_with("case:1:reindex\talice\t1\tyes\t20"));
  r = cli(s, {"lease", "list", "--prefix", "case:2:", "--json"});
  CHECK(r.out.starts_with("[{\"name\":\"case:2:reindex\",\"owner\":\"bob\",\"token\":1,\"held\":true,"));
  CHECK(lines(r.out).size() == 1);

  // Release by the holder's owner and token.
  r = cli(s, {"lease", "release", "case:1:reindex", "--owner", "alice", "--token", "2"});
  CHECK(r.code == 5);
  CHECK(has(r.err, "[lease_lost]"));
  CHECK(has(r.err, "last holder alice, token 1, held"));
  r = cli(s, {"lease", "release", "case:1:reindex", "--owner", "alice", "--token", "1"});
  CHECK(r.code == 0);
  CHECK(r.out == "released case:1:reindex\n");
  r = cli(s, {"lease", "release", "case:1:reindex", "--owner", "alice", "--token", "1", "--json"});
  CHECK(r.code == 5); // already released
  r = cli(s, {"lease", "release", "never", "--owner", "x", "--token", "1"});
  CHECK(r.code == 4);

  // Forcing needs the name twice (or --yes) and reports the holder.
  r = cli(s, {"lease", "release", "case:2:reindex", "--force"});
  CHECK(r.code == 2);
  CHECK(has(r.err, "--confirm"));
  r = cli(s, {"lease", "release", "case:2:reindex", "--force", "--confirm", "case:2:other"});
  CHECK(r.code == 2);
  r = cli(s, {"lease", "release", "case:2:reindex", "--force", "--owner", "bob", "--token", "1"});
  CHECK(r.code == 2);
  r = cli(s, {"lease", "release", "case:2:reindex"});
  CHECK(r.code == 2);
  CHECK(lease::inspect(db, "case:2:reindex")->held);
  r = cli(s, {"lease", "release", "case:2:reindex", "--force", "--confirm", "case:2:reindex"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("force-released case:2:reindex: it was held by bob (token 1, until 20"));
  CHECK(has(r.out, "warning: bob may still be running"));
  CHECK_FALSE(lease::inspect(db, "case:2:reindex")->held);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { lease::check(tx, "case:2:reindex", b->token); }), lease_lost);
  r = cli(s, {"--json", "lease", "release", "case:2:reindex", "--force", "--yes"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("{\"name\":\"case:2:reindex\",\"forced\":true,\"was_held\":false,\"owner\":\"bob\",\"token\":1,"));
  r = cli(s, {"lease", "release", "never", "--force", "--yes"});
  CHECK(r.code == 4);
}

TEST_CASE("cli: job list, show, retry, cancel and stats") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::job_spec f;
  f.operation = "full";
  f.subject = "file:1";
  f.stages = {"count", "index", "rules"};
  f.max_attempts = 1;
  const auto failed_id = jobs::enqueue(db, f).id;
  jobs::claim_options w;
  w.owner = "worker-1";
  auto j = jobs::claim(db, w).at(0);
  db.write([&](transaction& tx) { jobs::complete_stage(tx, {j.id, j.lease_epoch}, 0, tx.now_us()); });
  jobs::fail(db, {j.id, j.lease_epoch}, 1, "index broke");
  jobs::job_spec q;
  q.operation = "full";
  q.subject = "file:2";
  const auto queued_id = jobs::enqueue(db, q).id;

  auto r = cli(s, {"job", "list"});
  CHECK(r.code == 0);
  auto rows = lines(r.out);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == "id\tstate\tstage\tattempts\toperation\tsubject\tcreated_at\tlast_error");
  CHECK(rows[1].starts_with(std::to_string(queued_id) + "\tqueued\trun\t0/5\tfull\tfile:2\t20"));
  CHECK(rows[2].starts_with(std::to_string(failed_id) + "\tfailed\tindex\t1/1\tfull\tfile:1\t"));
  CHECK(rows[2].ends_with("\tindex broke"));
  r = cli(s, {"job", "list", "--state", "failed", "--json"});
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("[{\"id\":" + std::to_string(failed_id) + ",\"operation\":\"full\",\"subject\":\"file:1\",\"state\":\"failed\","
                          "\"stages\":[\"count\",\"index\",\"rules\"],\"current_stage\":1,"));
  CHECK(lines(r.out).size() == 1);
  r = cli(s, {"job", "list", "--limit", "1", "--json"});
  CHECK(r.out.starts_with("[{\"id\":" + std::to_string(queued_id) + ","));
  r = cli(s, {"job", "list", "--state", "done"});
  CHECK(r.code == 2);
  CHECK(has(r.err, "[invalid_argument]"));
  r = cli(s, {"job", "list", "--limit", "0"});
  CHECK(r.code == 2);

  r = cli(s, {"job", "show", std::to_string(failed_id)});
  CHECK(r.code == 0);
  CHECK(has(r.out, "state     failed\n"));
  CHECK(has(r.out, "stage     index (1/3)\n"));
  CHECK(has(r.out, "error     index broke\n"));
  CHECK(has(r.out, "\n0\tcount\tsucceeded\t1\t20"));
  CHECK(has(r.out, "\n1\tindex\tfailed\t1\t20"));
  CHECK(has(r.out, "\tindex broke\n"));
  CHECK(has(r.out, "\n2\trules\tpending\t0\t-\t-\t\n"));
  r = cli(s, {"job", "show", std::to_string(failed_id), "--json"});
  CHECK(r.out.starts_with("{\"job\":{\"id\":" + std::to_string(failed_id) + ","));
  CHECK(has(r.out, "\"stages\":[{\"stage\":\"count\",\"position\":0,\"state\":\"succeeded\",\"attempts\":1,"));
  CHECK(has(r.out, "{\"stage\":\"index\",\"position\":1,\"state\":\"failed\",\"attempts\":1,"));
  CHECK(has(r.out, "\"error\":\"index broke\"}],\"outputs\":[]}"));
  r = cli(s, {"job", "show", "999999"});
  CHECK(r.code == 4);
  CHECK(has(r.err, "[not_found]"));
  r = cli(s, {"job", "show", "abc"});
  CHECK(r.code == 2);

  r = cli(s, {"job", "stats"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "state queued 1\nstate paused 0\nstate running 0\nstate succeeded 0\nstate failed 1\nstate cancelled 0\n"));
  CHECK(has(r.out, "stage run 1\n"));
  CHECK(has(r.out, "ready 1\n"));
  r = cli(s, {"job", "stats", "--json"});
  CHECK(r.out.starts_with("{\"by_state\":{\"queued\":1,\"paused\":0,\"running\":0,\"succeeded\":0,\"failed\":1,\"cancelled\":0,\"waiting\":0,\"blocked\":0},\"active_by_stage\":{\"run\":1},\"ready\":1,"));
  CHECK(r.out.ends_with(",\"stuck\":[]}\n"));

  r = cli(s, {"job", "retry", std::to_string(failed_id)});
  CHECK(r.code == 0);
  CHECK(r.out == "requeued job " + std::to_string(failed_id) + " at stage index (1/3)\n");
  auto back = jobs::get(db, failed_id);
  CHECK(back->state == jobs::job_state::queued);
  CHECK(back->current_stage == 1);
  CHECK(back->attempts == 0);
  r = cli(s, {"job", "retry", std::to_string(failed_id)});
  CHECK(r.code == 5);
  CHECK(has(r.err, "[invalid_transition]"));
  r = cli(s, {"job", "retry", "999999"});
  CHECK(r.code == 4);

  r = cli(s, {"job", "cancel", std::to_string(queued_id)});
  CHECK(r.code == 0);
  CHECK(r.out == "cancelled job " + std::to_string(queued_id) + "\n");
  r = cli(s, {"job", "cancel", std::to_string(queued_id)});
  CHECK(r.code == 5);
  CHECK(has(r.err, "is cancelled"));
  r = cli(s, {"job", "cancel", "999999"});
  CHECK(r.code == 4);
  auto running = jobs::claim(db, w).at(0);
  CHECK(running.id == failed_id);
  r = cli(s, {"job", "cancel", std::to_string(failed_id), "--json"});
  CHECK(r.code == 0);
  CHECK(r.out == "{\"id\":" + std::to_string(failed_id) + ",\"state\":\"running\",\"cancel_requested\":true}\n");
  r = cli(s, {"--json", "job", "retry", std::to_string(queued_id)});
  CHECK(r.code == 0);
  CHECK(has(r.out, "\"state\":\"queued\""));
}

TEST_CASE("cli: new commands report bad URLs, unavailable and unmigrated databases") {
  scratch_database s;
  for (const auto& cmd : std::vector<std::vector<std::string>>{{"counter", "show"}, {"file", "list", "c"}, {"lease", "list"}, {"job", "stats"}}) {
    auto args = cmd;
    args.insert(args.begin(), {"--db", "nosuch://x"});
    auto r = cli_process(args, s.folder()).wait();
    CHECK(r.code == 2);
    CHECK(has(r.err, "[bad_url]"));
    if (s.kind() == casecore::testing::backend_kind::sqlite) {
      r = cli(s, cmd); // no database file yet: an error, and none is created
      CHECK(r.code == 4);
      CHECK(has(r.err, "no SQLite database"));
      CHECK_FALSE(std::filesystem::exists(parse_url(s.url()).target));
    }
  }
  s.open(); // an empty database, not migrated
  for (const auto& cmd : std::vector<std::vector<std::string>>{{"counter", "show"}, {"file", "list", "c"}, {"lease", "list"}, {"job", "stats"}}) {
    const auto r = cli(s, cmd);
    CHECK(r.code == 1);
    CHECK(has(r.err, "run `casecore migrate` first"));
  }
  auto r = cli_process({"--db", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "counter", "next", "x"}, s.folder()).wait();
#ifdef CASECORE_WITH_POSTGRES
  CHECK(r.code == 3);
#else // built without PostgreSQL: unsupported
  CHECK(r.code == 2);
  CHECK(r.err.find("unsupported") != std::string::npos);
#endif
}

TEST_CASE("cli: --version prints the version and exits 0") {
  scratch_database s;
  const auto r = cli_process({"--version"}, s.folder()).wait();
  CHECK(r.code == 0);
  CHECK(r.out.starts_with("casecore "));
  const auto v = r.out.substr(9);
  CHECK(v.size() >= 6);
  CHECK(std::isdigit(static_cast<unsigned char>(v.at(0))));
  CHECK(std::count(v.begin(), v.end(), '.') == 2); // MAJOR.MINOR.PATCH from the project's VERSION
  CHECK(v.back() == '\n');
  CHECK(r.err.empty());
}

TEST_CASE("cli: an unknown command is named as such (exit 2), at any level") {
  scratch_database s;
  s.open();
  auto r = cli(s, {"frobnicate"});
  CHECK(r.code == 2);
  CHECK(has(r.err, "unknown command 'frobnicate'"));
  CHECK(has(r.err, "job")); // the commands that exist are listed
  r = cli(s, {"job", "frob"});
  CHECK(r.code == 2);
  CHECK(has(r.err, "unknown command 'frob' for 'casecore job'"));
  CHECK(has(r.err, "stats"));
  r = cli_process({"--db", "job", "frobnicate"}, s.folder()).wait(); // "job" is --db's value here
  CHECK(r.code == 2);
  CHECK(has(r.err, "unknown command 'frobnicate'"));
  r = cli(s, {}); // no command at all is not an unknown one
  CHECK(r.code == 2);
  CHECK_FALSE(has(r.err, "unknown command"));
  r = cli(s, {"job", "show", "x"}); // a bad argument of a known command is not an unknown command
  CHECK(r.code == 2);
  CHECK_FALSE(has(r.err, "unknown command"));
}

TEST_CASE("cli: under --json an error is one JSON document on stdout (and a line on stderr)") {
  scratch_database s;
  auto r = cli(s, {"--json", "job", "stats"});
  if (s.kind() == casecore::testing::backend_kind::sqlite) { // no database file yet
    CHECK(r.code == 4);
    CHECK(r.out.starts_with("{\"error\":{\"code\":\"not_found\",\"message\":\"no SQLite database at "));
    CHECK(r.out.ends_with("\",\"exit\":4}}\n"));
    CHECK(has(r.err, "[not_found]"));
  }
  s.open();
  r = cli(s, {"job", "stats", "--json"}); // not migrated; --json after the command counts too
  CHECK(r.code == 1);
  CHECK(r.out.starts_with("{\"error\":{\"code\":\"backend_error\",\"message\":\"the database has no casecore.jobs schema"));
  CHECK(r.out.ends_with(",\"exit\":1}}\n"));
  r = cli(s, {"--json", "frobnicate"});
  CHECK(r.code == 2);
  CHECK(r.out.starts_with("{\"error\":{\"code\":\"usage\",\"message\":\"unknown command 'frobnicate'"));
  r = cli(s, {"--json", "outbox", "pending"}); // CLI11's own usage error
  CHECK(r.code == 2);
  CHECK(r.out.starts_with("{\"error\":{\"code\":\"usage\",\"message\":\""));
  CHECK(r.out.ends_with("\"exit\":2}}\n"));
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1); // one line: newlines in the message are escaped
  r = cli(s, {"outbox", "pending"}); // without --json stdout stays empty
  CHECK(r.code == 2);
  CHECK(r.out.empty());
}

TEST_CASE("cli: job stats --json lists every state, zeros included") {
  scratch_database s;
  auto db = s.open_migrated();
  auto r = cli(s, {"--json", "job", "stats"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "\"by_state\":{\"queued\":0,\"paused\":0,\"running\":0,\"succeeded\":0,\"failed\":0,\"cancelled\":0,\"waiting\":0,\"blocked\":0}"));
  jobs::job_spec spec;
  spec.operation = "op";
  spec.subject = "s1";
  jobs::enqueue(db, spec);
  r = cli(s, {"--json", "job", "stats"});
  CHECK(has(r.out, "\"by_state\":{\"queued\":1,\"paused\":0,\"running\":0,\"succeeded\":0,\"failed\":0,\"cancelled\":0,\"waiting\":0,\"blocked\":0}"));
}

TEST_CASE("cli: metrics --json numbers are exact JSON numbers (no fixed six decimals, no nan)") {
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    for (int i = 0; i < 3; ++i) outbox::publish(tx, "mail", "m");
  });
  const auto r = cli(s, {"--json", "metrics"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "{\"name\":\"casecore_outbox_messages\",\"labels\":{\"topic\":\"mail\"},\"value\":3}"));
  CHECK_FALSE(has(r.out, ".000000"));
  CHECK_FALSE(has(r.out, "nan"));
  CHECK_FALSE(has(r.out, "inf,"));
}

TEST_CASE("cli: bash completion is generated from the command table") {
  scratch_database s;
  const std::string cli_path = CASECORE_CLI_PATH;
  const auto complete = [&](const std::string& words, int cword) {
    const auto script = "source <('" + cli_path + "' completion bash) && COMP_WORDS=(" + words + ") && COMP_CWORD=" +
                        std::to_string(cword) + " && _casecore && echo \"${COMPREPLY[*]}\"";
    return cli_process("/bin/bash", {"-c", script}, s.folder()).wait();
  };
  auto r = complete("casecore jo", 1);
  CHECK(r.code == 0);
  CHECK(r.out == "job\n");
  r = complete("casecore job st", 2);
  CHECK(r.out == "stats\n");
  r = complete("casecore --db x.db lease ''", 4);
  CHECK(has(r.out, "list"));
  CHECK(has(r.out, "release"));
  r = complete("casecore lease release n --f", 4);
  CHECK(r.out == "--force\n");
  r = complete("casecore --js", 1);
  CHECK(r.out == "--json\n");
  r = cli_process({"completion", "zsh"}, s.folder()).wait();
  CHECK(r.code == 2);
}

TEST_CASE("cli: the man page names every command") {
  scratch_database s;
  const auto r = cli_process({"man"}, s.folder()).wait();
  CHECK(r.code == 0);
  CHECK(r.out.starts_with(".\\\" casecore(1)"));
  CHECK(has(r.out, ".TH CASECORE 1"));
  for (const char* cmd : {"migrate", "status", "metrics", "outbox pending", "counter next", "counter show", "file register",
                          "file list", "lease list", "lease release", "job list", "job show", "job retry", "job cancel",
                          "job stats", "health", "rate show", "trigger new\\-secret", "completion", "man"})
    CHECK_MESSAGE(has(r.out, std::string(".B ") + cmd), cmd);
  CHECK(has(r.out, "\\-\\-force"));
  CHECK(has(r.out, "CASECORE_DB"));
}

TEST_CASE("cli: an unknown PostgreSQL database or role is a configuration error, not unavailable") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::postgres) return;
  if (casecore::testing::behind_test_pooler()) {
    MESSAGE("skipped: behind the test pooler, PgBouncer answers for the server about unknown databases");
    return;
  }
  const std::string base = std::getenv("CASECORE_TEST_PG_URL");
  const auto u = parse_url(base);
  REQUIRE(!u.hosts.empty());
  const auto host = u.hosts.at(0).host + ":" + u.hosts.at(0).port;
  const auto user = u.user.empty() ? std::string("postgres") : u.user;
  auto r = cli_process({"--db", "postgresql://" + user + "@" + host + "/casecore_no_such_database", "status"}, s.folder()).wait();
  CHECK(r.code == 2);
  CHECK(has(r.err, "[configuration]"));
  r = cli_process({"--json", "--db", "postgresql://casecore_no_such_role@" + host + "/" + u.dbname, "status"}, s.folder()).wait();
  CHECK(r.code == 2);
  CHECK(has(r.out, "{\"error\":{\"code\":\"configuration\""));
}

TEST_CASE("cli: job show prints stage outputs escaped; --json embeds JSON outputs and base64 bytes") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::job_spec spec;
  spec.operation = "ocr";
  spec.subject = "doc:1";
  spec.stages = {"extract", "render"};
  const auto id = jobs::enqueue(db, spec).id;
  jobs::worker_options o;
  o.owner = "w1";
  o.threads = 1;
  jobs::worker w(db, o);
  // U+202E (right-to-left override) is valid JSON text and must not reach a terminal raw.
  const std::string json = "{\"title\": \"\xe2\x80\xae" "evil\", \"pages\": [1, 2]}";
  w.on_stage("extract", [&](jobs::job_context& ctx) { ctx.set_output_json(json); });
  w.on_stage("render", [](jobs::job_context& ctx) { ctx.set_output(std::string("\x1b[2J\x00\xff", 6)); });
  REQUIRE(w.run_once() == 1);

  auto r = cli(s, {"job", "show", std::to_string(id)});
  CHECK(r.code == 0);
  CHECK(has(r.out, "\nposition\tstage\tkind\tsize\twritten_at\toutput\n"));
  CHECK(has(r.out, "\n0\textract\tjson\t" + std::to_string(json.size()) + "\t20"));
  CHECK(has(r.out, "\t{\"title\": \"\\u{202e}evil\", \"pages\": [1, 2]}\n"));
  CHECK(has(r.out, "\n1\trender\tbytes\t6\t20"));
  CHECK(has(r.out, "\thex:1b5b324a00ff\n"));
  CHECK_FALSE(has(r.out, "\xe2\x80\xae"));
  CHECK_FALSE(has(r.out, "\x1b"));

  r = cli(s, {"job", "show", std::to_string(id), "--json"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "\"outputs\":[{\"stage\":\"extract\",\"position\":0,\"kind\":\"json\",\"size\":" + std::to_string(json.size()) +
                       ",\"lease_epoch\":"));
  CHECK(has(r.out, ",\"json\":" + json + "}"));
  CHECK(has(r.out, "{\"stage\":\"render\",\"position\":1,\"kind\":\"bytes\",\"size\":6,"));
  CHECK(has(r.out, ",\"base64\":\"G1sySgD/\"}]}"));
}

#endif

TEST_CASE("cli: rate show reports a key's limit, used tokens and next free time; unknown and bad keys are errors") {
  scratch_database s;
  auto db = s.open_migrated();
  const rate_limiter::limit l{2, std::chrono::hours(1)};
  REQUIRE(rate_limiter::try_acquire(db, "api:acme", l).acquired);
  auto r = cli(s, {"rate", "show", "api:acme"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "limit\t2 per 3600000 ms\n"));
  CHECK(has(r.out, "used\t1 in the last period (1 free)\n"));
  CHECK(has(r.out, "next_free\tnow\n"));
  const auto second = rate_limiter::try_acquire(db, "api:acme", l);
  REQUIRE(second.acquired);
  r = cli(s, {"rate", "show", "api:acme", "--json"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "\"count\":2,\"period_us\":3600000000,\"used\":2,\"free\":0,"));
  const auto log = rate_limiter::inspect(db, "api:acme")->log;
  CHECK(has(r.out, "\"next_free_us\":" + std::to_string(log.front() + 3600000000LL)));
  r = cli(s, {"rate", "show", "never-used"});
  CHECK(r.code == 4);
  r = cli(s, {"rate", "show", "bad\x1b[2Jkey"});
  CHECK(r.code == 2);
  CHECK_FALSE(has(r.err, "\x1b"));
}

TEST_CASE("cli: job pause, pauses and resume") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::job_spec spec;
  spec.operation = "ocr";
  spec.subject = "f1";
  const auto id = jobs::enqueue(db, spec).id;
  auto r = cli(s, {"job", "pause", "--operation", "ocr", "--reason", "vendor down", "--by", "alice"});
  CHECK(r.code == 0);
  CHECK(r.out == "paused operation ocr\n");
  CHECK(jobs::get(db, id)->state == jobs::job_state::paused);
  r = cli(s, {"job", "pause", "--operation", "ocr"});
  CHECK(r.out == "already paused: operation ocr\n");
  r = cli(s, {"job", "pauses", "--json"});
  CHECK(r.code == 0);
  CHECK(has(r.out, "[{\"operation\":\"ocr\",\"concurrency_key\":\"\",\"paused_at_us\":"));
  CHECK(has(r.out, "\"paused_by\":\"alice\",\"reason\":\"vendor down\",\"paused_jobs\":1}]"));
  r = cli(s, {"job", "pauses"});
  CHECK(has(r.out, "ocr"));
  CHECK(has(r.out, "vendor down"));
  r = cli(s, {"job", "pause"}); // no target: refused, nothing written
  CHECK(r.code == 2);
  CHECK(has(r.err, "[invalid_argument]"));
  r = cli(s, {"job", "pause", "--key", "case\x1b[2J"});
  CHECK(r.code == 2);
  CHECK(jobs::pauses(db).size() == 1);
  r = cli(s, {"job", "resume", "--operation", "ocr"});
  CHECK(r.out == "resumed operation ocr\n");
  CHECK(jobs::get(db, id)->state == jobs::job_state::queued);
  r = cli(s, {"--json", "job", "resume", "--operation", "ocr"});
  CHECK(r.out == "{\"resumed\":false}\n");
  CHECK(jobs::pauses(db).empty());
}
