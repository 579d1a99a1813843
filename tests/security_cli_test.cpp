// Issue 16 findings 5, 8, 9 and 11 at the command line: text output cannot drive the operator's
// terminal, --json is valid UTF-8, read-only commands neither create nor change a database, the
// PostgreSQL blob folder has no default in the current directory, and `trigger new-secret` works.
#ifdef CASECORE_CLI_PATH

#include <casecore/counter.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/trigger.hpp>
#include <casecore/url.hpp>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>


using namespace casecore;
using casecore::testing::scratch_database;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct run_result {
  int code = -1;
  std::string out, err;
};

/// Run the CLI with `args` in `cwd`, stdout/stderr captured, CASECORE_DB / CASECORE_BLOBS unset.
run_result run_in(const fs::path& cwd, const std::vector<std::string>& args, const fs::path&) {
  casecore::testing::program_options o;
  o.cwd = cwd.string();
  o.unset_env = {"CASECORE_BLOBS", "CASECORE_DB"};
  auto r = casecore::testing::run_program(CASECORE_CLI_PATH, args, o);
  return {r.exit_code, std::move(r.out), std::move(r.err)};
}

run_result cli(const scratch_database& s, std::vector<std::string> args) {
  args.insert(args.begin(), {"--db", s.url()});
  return run_in(s.folder(), args, s.folder());
}

// A byte a terminal acts on: C0 controls other than the table's own TAB / LF, DEL, and the C1 CSI.
bool has_raw_control(const std::string& text) {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) return true;
  }
  return text.find("\xc2\x9b") != std::string::npos || text.find("\xe2\x80\xae") != std::string::npos;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Strict check: one JSON value of valid UTF-8 with no raw control characters inside strings.
bool valid_json_text(const std::string& s) {
  if (!detail::is_valid_utf8(s)) return false;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (in_string) {
      if (c < 0x20) return false;
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    }
  }
  return !in_string;
}

const std::string hostile = "evil\x1b[2J\x1b[H\rFORGED\tROW\n\x7f\xc2\x9b" "31m\xe2\x80\xae";

// Rows carrying hostile text as an older version, another tool or a direct SQL write could leave.
void plant_hostile_rows(database& db) {
  auto grant = lease::try_acquire(db, "case:1:reindex", "worker-1", 60s);
  REQUIRE(grant);
  jobs::job_spec spec;
  spec.operation = "full";
  spec.subject = "file:1";
  const auto job = jobs::enqueue(db, spec);
  db.write([&](transaction& tx) {
    tx.exec("UPDATE casecore_leases SET owner = $1", hostile);
    tx.exec("UPDATE casecore_jobs SET subject = $1, last_error = $1, concurrency_key = $1 WHERE id = $2", hostile, job.id);
    tx.exec("INSERT INTO casecore_files(case_id, sha256, original_name, size, blob_key, registered_by, registered_at) "
            "VALUES('case-1', $1, $2, 1, $1, $2, 1)",
            std::string(64, 'a'), hostile);
  });
}

} // namespace

TEST_CASE("cli: text output escapes control characters from the database; rows cannot be forged") {
  scratch_database s;
  auto db = s.open_migrated();
  plant_hostile_rows(db);
  const auto job_id = std::to_string(jobs::list(db, std::nullopt, 10).at(0).id);
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"lease", "list"}, {"job", "list"}, {"job", "show", job_id}, {"file", "list", "case-1"}}) {
    CAPTURE(cmd[0] + " " + cmd[1]);
    const auto r = cli(s, cmd);
    CHECK(r.code == 0);
    CHECK_MESSAGE(!has_raw_control(r.out), detail::escape_for_terminal(r.out));
    CHECK(r.out.find("\\e[2J") != std::string::npos); // shown, escaped
  }
  auto r = cli(s, {"lease", "list"});
  const auto rows = lines(r.out);
  CHECK(rows.size() == 2); // header + the one lease: the CR / LF / TAB inside the owner added nothing
  CHECK(std::count(rows[1].begin(), rows[1].end(), '\t') == 5);
  r = cli(s, {"job", "list"});
  CHECK(lines(r.out).size() == 2);
  r = cli(s, {"file", "list", "case-1"});
  CHECK(lines(r.out).size() == 2);

  // Errors quote user input; stderr is escaped too.
  r = cli(s, {"lease", "release", "case:1:reindex", "--owner", "x\x1b]0;pwned\x07", "--token", "9"});
  CHECK(r.code != 0);
  CHECK_FALSE(r.err.empty());
  CHECK_MESSAGE(!has_raw_control(r.err), detail::escape_for_terminal(r.err));
}

TEST_CASE("cli: --json output is valid UTF-8 JSON whatever the database holds") {
  scratch_database s;
  auto db = s.open_migrated();
  plant_hostile_rows(db);
  if (s.kind() == casecore::testing::backend_kind::sqlite) // PostgreSQL refuses invalid UTF-8 itself
    db.write([](transaction& tx) { tx.exec("UPDATE casecore_leases SET owner = $1", std::string("bad\xff\xfe utf8 \xc3")); });
  const auto job_id = std::to_string(jobs::list(db, std::nullopt, 10).at(0).id);
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"lease", "list", "--json"}, {"job", "list", "--json"}, {"job", "show", job_id, "--json"}, {"file", "list", "case-1", "--json"}}) {
    CAPTURE(cmd[0] + " " + cmd[1]);
    const auto r = cli(s, cmd);
    CHECK(r.code == 0);
    CHECK_MESSAGE(valid_json_text(r.out), detail::escape_for_terminal(r.out));
    CHECK_FALSE(has_raw_control(r.out.substr(0, r.out.size() - 1))); // the final newline is ours
  }
  if (s.kind() == casecore::testing::backend_kind::sqlite) {
    const auto r = cli(s, {"lease", "list", "--json"});
    CHECK(r.out.find("bad\xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd") != std::string::npos); // U+FFFD per bad byte
  }
}

TEST_CASE("cli: read-only commands on a missing SQLite file fail and create nothing") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::sqlite) return;
  const auto typo = s.folder() / "typo.db";
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"status"}, {"metrics"}, {"outbox", "pending", "t"}, {"counter", "show"}, {"file", "list", "c"}, {"lease", "list"},
           {"job", "list"}, {"job", "show", "1"}, {"job", "stats"}, {"counter", "next", "wo"}, {"lease", "release", "x", "--force", "--yes"},
           {"job", "retry", "1"}, {"job", "cancel", "1"}}) {
    CAPTURE(cmd[0]);
    auto args = cmd;
    args.insert(args.begin(), {"--db", "sqlite:" + typo.string()});
    const auto r = run_in(s.folder(), args, s.folder());
    CHECK(r.code == 4);
    CHECK(r.err.find("no SQLite database") != std::string::npos);
    CHECK(r.out.empty());
    CHECK_FALSE(fs::exists(typo));
    CHECK_FALSE(fs::exists(typo.string() + "-wal"));
  }
  // A relative typo, resolved in the working directory, creates nothing either.
  const auto r = run_in(s.folder(), {"--db", "sqlite:typo2.db", "status"}, s.folder());
  CHECK(r.code == 4);
  CHECK_FALSE(fs::exists(s.folder() / "typo2.db"));
  // migrate is the command that creates a database.
  CHECK(run_in(s.folder(), {"--db", "sqlite:typo2.db", "migrate"}, s.folder()).code == 0);
  CHECK(fs::exists(s.folder() / "typo2.db"));
}

namespace {
std::string journal_mode(const std::string& path) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  std::string mode = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(h);
  return mode;
}

void set_journal_mode(const std::string& path, const char* mode) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &h, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(h, (std::string("PRAGMA journal_mode=") + mode).c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(h);
}
} // namespace

TEST_CASE("cli: read-only commands never switch the journal mode; write commands and migrate may") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::sqlite) return;
  const auto file = parse_url(s.url()).target;
  {
    auto db = s.open_migrated();
    auto g = lease::try_acquire(db, "l", "o", 60s);
    REQUIRE(g);
  }
  set_journal_mode(file, "DELETE");
  REQUIRE(journal_mode(file) == "delete");
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"status"}, {"metrics"}, {"outbox", "pending", "t"}, {"counter", "show"}, {"file", "list", "c"}, {"lease", "list"},
           {"job", "list"}, {"job", "stats"}, {"job", "show", "1"}}) {
    CAPTURE(cmd[0]);
    const auto r = cli(s, cmd);
    CHECK((r.code == 0 || r.code == 4)); // job show 1: not found is fine
    CHECK(journal_mode(file) == "delete");
  }
  CHECK(cli(s, {"counter", "next", "wo"}).code == 0); // a write path: WAL is its business
  CHECK(journal_mode(file) == "wal");
}

TEST_CASE("cli: file register on PostgreSQL needs a named blob folder; nothing lands in the working directory") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto cwd = s.folder() / "cwd";
  fs::create_directories(cwd);
  std::ofstream(cwd / "upload.txt") << "evidence";
  if (s.kind() == casecore::testing::backend_kind::postgres) {
    const auto r = cli(s, {"file", "register", "case-1", (cwd / "upload.txt").string()});
    CHECK(r.code == 2);
    CHECK(r.err.find("--blobs") != std::string::npos);
    CHECK_FALSE(fs::exists(s.folder() / "casecore-blobs"));
    CHECK(file_registry(db, *make_memory_blob_store()).files_of_case("case-1").empty());
  }
  const auto blobs = s.folder() / "named-blobs";
  auto r = run_in(cwd, {"--db", s.url(), "file", "register", "case-1", "upload.txt", "--blobs", blobs.string()}, s.folder());
  CHECK(r.code == 0);
  CHECK_FALSE(fs::exists(cwd / "casecore-blobs"));
  CHECK(fs::exists(blobs / "objects"));
}

TEST_CASE("cli: trigger new-secret prints a fresh 256-bit secret the verifier accepts") {
  scratch_database s;
  const auto a = run_in(s.folder(), {"trigger", "new-secret"}, s.folder());
  const auto b = run_in(s.folder(), {"trigger", "new-secret"}, s.folder());
  CHECK(a.code == 0);
  REQUIRE(a.out.size() == 65);
  CHECK(a.out.back() == '\n');
  const auto secret = a.out.substr(0, 64);
  CHECK(secret.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a.out != b.out);
  CHECK_NOTHROW(trigger::check_secret(secret));
  const auto j = run_in(s.folder(), {"trigger", "new-secret", "--json"}, s.folder());
  CHECK(j.out.starts_with("{\"secret\":\""));
  CHECK(j.out.find("\"bits\":256") != std::string::npos);
}

#endif
