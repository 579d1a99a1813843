// Issue 16 findings 3, 4, 7 and 8 and issue 10 defect 13: the local blob store, staging folders
// and the SQLite file are private; registration opens a path once and reads only regular files; a
// hash is not proof of possession; stored content is verified; commits are durable. Real files, a
// real second local user (when the suite runs as root), real FIFOs and devices.
#include <casecore/detail/token.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/staging.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/steps.hpp>
#include <casecore/url.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <pwd.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <type_traits>
#include <unistd.h>


using namespace casecore;
using casecore::testing::scratch_database;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Finding 7: a staged_blob cannot be made from a hash and a size by the caller.
static_assert(!std::is_constructible_v<staged_blob, std::string, std::uint64_t, bool>, "staged_blob must be opaque");
static_assert(!std::is_default_constructible_v<staged_blob>, "staged_blob must be opaque");
static_assert(!std::is_aggregate_v<staged_blob>, "staged_blob must be opaque");

namespace {

fs::path write_file(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(content.data(), static_cast<std::streamsize>(content.size()));
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

fs::path blob_file(const fs::path& store, const std::string& key) { return store / "objects" / key.substr(0, 2) / key; }

std::int64_t file_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_files"); });
}

// Sets the umask for one scope (the worst case for a store that relies on it: 0).
struct umask_scope {
  mode_t old;
  explicit umask_scope(mode_t m) : old(::umask(m)) {}
  ~umask_scope() { ::umask(old); }
};

// A throwaway second local user (root only): created with useradd, removed with userdel.
class probe_user {
public:
  probe_user() {
    if (::geteuid() != 0 || std::system("command -v useradd >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1") != 0) return;
    name_ = "ccprobe" + std::to_string(::getpid());
    if (std::system(("useradd -M -N -r -s /usr/sbin/nologin " + name_ + " >/dev/null 2>&1").c_str()) != 0) {
      name_.clear();
      return;
    }
    if (const passwd* pw = ::getpwnam(name_.c_str())) uid_ = pw->pw_uid;
  }
  ~probe_user() {
    if (!name_.empty()) (void)!std::system(("userdel " + name_ + " >/dev/null 2>&1").c_str());
  }
  probe_user(const probe_user&) = delete;
  probe_user& operator=(const probe_user&) = delete;
  bool available() const { return !name_.empty() && uid_ != 0; }
  uid_t uid() const { return uid_; }
  /// Runs `command` (sh syntax, single-quote safe paths) as this user; true when it exits 0.
  bool run(const std::string& command) const {
    return std::system(("runuser -u " + name_ + " -- sh -c '" + command + "' >/dev/null 2>&1").c_str()) == 0;
  }
  bool can_read(const fs::path& file) const { return run("cat \"" + file.string() + "\""); }
  bool can_list(const fs::path& dir) const { return run("ls \"" + dir.string() + "\""); }

private:
  std::string name_;
  uid_t uid_ = 0;
};

constexpr const char* no_probe_message =
    "second-local-user checks skipped: they need root (useradd + runuser) to create a throwaway user";

// Runs `f` on a thread; false when it did not finish within `limit` (the thread is then detached
// once `unblock` has been called, so a hang is reported instead of hanging the suite).
template <class F> bool finishes_within(std::chrono::milliseconds limit, F f, const std::function<void()>& unblock) {
  std::packaged_task<void()> task(std::move(f));
  auto done = task.get_future();
  std::thread t(std::move(task));
  if (done.wait_for(limit) == std::future_status::ready) {
    t.join();
    return true;
  }
  unblock();
  t.join();
  return false;
}

// Open the FIFO for writing once and close it: a reader blocked in open() returns and reads EOF.
void unblock_fifo(const fs::path& fifo) {
  const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
}

} // namespace

// ---- finding 3: private blobs and folders ------------------------------------------------------

TEST_CASE("local blob store: blobs are 0600 in 0700 folders whatever the umask") {
  scratch_database s;
  const auto dir = s.folder() / "blobs";
  umask_scope open_umask(0); // the old store relied on the umask: 0644 / 0755 at best, 0666 / 0777 here
  auto store = make_local_blob_store(dir);
  const std::string key = sha256_hex("evidence");
  store->put(key, "evidence");
  CHECK(mode_of(blob_file(dir, key)) == 0600);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(dir / "objects") == 0700);
  CHECK(mode_of(dir / "tmp") == 0700);
  CHECK(mode_of(blob_file(dir, key).parent_path()) == 0700);
}

TEST_CASE("local blob store: a documented option widens the modes exactly; bad modes are refused") {
  scratch_database s;
  umask_scope strict(077);
  local_blob_store_options o;
  o.file_mode = 0640;
  o.dir_mode = 0750;
  auto store = make_local_blob_store(s.folder() / "shared", o);
  store->put("k1", "x");
  CHECK(mode_of(blob_file(s.folder() / "shared", "k1")) == 0640);
  CHECK(mode_of(s.folder() / "shared" / "objects") == 0750);
  local_blob_store_options bad;
  bad.file_mode = 0200; // the owner could not read its own blobs
  CHECK_THROWS_AS(make_local_blob_store(s.folder() / "bad", bad), invalid_argument);
  bad.file_mode = 04600;
  CHECK_THROWS_AS(make_local_blob_store(s.folder() / "bad", bad), invalid_argument);
}

TEST_CASE("local blob store: an existing folder writable by others or owned by another user is refused") {
  scratch_database s;
  const auto open_dir = s.folder() / "open";
  fs::create_directories(open_dir);
  ::chmod(open_dir.c_str(), 0777);
  try {
    make_local_blob_store(open_dir);
    FAIL("a world-writable store folder was accepted");
  } catch (const error& e) {
    CHECK(e.code() == errc::configuration);
  }
  fs::create_directories(s.folder() / "sub" / "objects");
  ::chmod((s.folder() / "sub" / "objects").c_str(), 0775);
  CHECK_THROWS_AS(make_local_blob_store(s.folder() / "sub"), error);
  local_blob_store_options trust;
  trust.check_ownership = false;
  CHECK_NOTHROW(make_local_blob_store(open_dir, trust));

  // Our own folder, merely wider than configured (an older version made it 0755): tightened.
  const auto old_dir = s.folder() / "old";
  fs::create_directories(old_dir / "objects");
  ::chmod(old_dir.c_str(), 0755);
  ::chmod((old_dir / "objects").c_str(), 0755);
  make_local_blob_store(old_dir);
  CHECK(mode_of(old_dir) == 0700);
  CHECK(mode_of(old_dir / "objects") == 0700);

  // objects/ may not be a symlink to somewhere else.
  const auto linked = s.folder() / "linked";
  fs::create_directories(linked);
  fs::create_directories(s.folder() / "elsewhere");
  fs::create_directory_symlink(s.folder() / "elsewhere", linked / "objects");
  CHECK_THROWS_AS(make_local_blob_store(linked), error);

  probe_user other;
  if (!other.available()) {
    MESSAGE(no_probe_message);
    return;
  }
  const auto foreign = s.folder() / "foreign";
  fs::create_directories(foreign);
  REQUIRE(::chown(foreign.c_str(), other.uid(), static_cast<gid_t>(-1)) == 0);
  ::chmod(foreign.c_str(), 0700);
  try {
    make_local_blob_store(foreign);
    FAIL("a store folder owned by another user was accepted");
  } catch (const error& e) {
    CHECK(e.code() == errc::configuration);
    CHECK(std::string(e.what()).find("owned by uid") != std::string::npos);
  }
}

TEST_CASE("a second local user cannot read blobs, staging folders or the SQLite database casecore created") {
  scratch_database s;
  probe_user other;
  if (!other.available()) {
    MESSAGE(no_probe_message);
    return;
  }
  // Only casecore's own modes may stand in the way: the fixture folder is made traversable.
  ::chmod(s.folder().c_str(), 0755);
  umask_scope usual(022);
  const auto control = write_file(s.folder() / "public.txt", "anyone may read this");
  ::chmod(control.c_str(), 0644);
  REQUIRE_MESSAGE(other.can_read(control), "the probe user must be able to read a 0644 file (else this test proves nothing)");

  auto db = s.open_migrated();
  const auto blobs = s.folder() / "blobs";
  auto store = make_local_blob_store(blobs);
  file_registry reg(db, *store);
  const auto upload = write_file(s.folder() / "upload.bin", "lab result: positive");
  ::chmod(upload.c_str(), 0644);
  const auto r = reg.register_path("case-1", upload, "result.pdf", "alice");
  CHECK_FALSE(other.can_read(blob_file(blobs, r.sha256)));
  CHECK_FALSE(other.can_list(blobs / "objects"));
  CHECK_FALSE(other.can_list(blobs));

  auto area = staging_area::create(s.folder() / "staging", "import-7");
  const auto staged = write_file(area.path() / "rows.csv", "name,dob\nalice,1990-01-01\n");
  ::chmod(staged.c_str(), 0644); // even a readable file inside is out of reach
  CHECK_FALSE(other.can_read(staged));
  CHECK_FALSE(other.can_list(area.path()));
  CHECK_FALSE(other.can_read(area.path() / ".casecore-owner"));

  if (s.kind() == casecore::testing::backend_kind::sqlite) {
    const fs::path file = parse_url(s.url()).target;
    CHECK_FALSE(other.can_read(file));
    for (const char* suffix : {"-wal", "-shm"})
      if (fs::exists(file.string() + suffix)) CHECK_FALSE(other.can_read(file.string() + suffix));
  }
}

TEST_CASE("SQLite: a database file casecore creates is 0600, and so are its -wal and -shm files") {
  scratch_database s;
  if (s.kind() != casecore::testing::backend_kind::sqlite) return;
  umask_scope usual(022);
  auto db = s.open_migrated();
  const fs::path file = parse_url(s.url()).target;
  CHECK(mode_of(file) == 0600);
  for (const char* suffix : {"-wal", "-shm"})
    if (fs::exists(file.string() + suffix)) CHECK(mode_of(file.string() + suffix) == 0600);
  // An existing database keeps the mode its owner gave it.
  ::chmod(file.c_str(), 0640);
  auto again = s.open();
  CHECK(mode_of(file) == 0640);
}

// ---- finding 4: open once, regular files only --------------------------------------------------

TEST_CASE("registration refuses a symlink unless asked to follow it") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto secret = write_file(s.folder() / "private" / "key.pem", "-----BEGIN PRIVATE KEY-----");
  const auto link = s.folder() / "upload" / "innocent.pdf";
  fs::create_directories(link.parent_path());
  fs::create_symlink(secret, link);
  CHECK_THROWS_AS(reg.register_path("case-1", link, "innocent.pdf", "mallory"), invalid_argument);
  CHECK(file_rows(db) == 0);
  CHECK(store->list().empty());
  file_registry_options follow;
  follow.follow_symlinks = true;
  file_registry following(db, *store, follow);
  CHECK(following.register_path("case-1", link, "innocent.pdf", "alice").status == registration_status::registered);
}

TEST_CASE("registration of a FIFO, a device, a socket or a folder is a typed error, never a hang") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto fifo = s.folder() / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::vector<fs::path> specials{fifo, "/dev/zero", "/dev/null", "/dev/urandom", s.folder()};
  for (const auto& p : specials) {
    CAPTURE(p);
    bool typed = false;
    CHECK(finishes_within(10s, [&] {
      try {
        reg.register_path("case-1", p, "x", "alice");
      } catch (const invalid_argument&) {
        typed = true;
      }
    }, [&] { unblock_fifo(fifo); }));
    CHECK(typed);
  }
  CHECK(file_rows(db) == 0);
  CHECK(store->list().empty());
}

// The old code checked the path with a symlink-following status() and then opened it again by
// name: a FIFO renamed over the path in between hung the registering thread for good.
TEST_CASE("a path swapped between a file and a FIFO while registering never hangs and never registers wrong bytes") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto dir = s.folder() / "swap";
  const auto real = write_file(dir / "real", "the real upload");
  const auto fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto target = dir / "target";
  const auto tmp = dir / "tmp";
  fs::copy_file(real, target);
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    for (bool to_fifo = true; !stop; to_fifo = !to_fifo) {
      ::unlink(tmp.c_str());
      if (::link((to_fifo ? fifo : real).c_str(), tmp.c_str()) == 0) ::rename(tmp.c_str(), target.c_str());
    }
  });
  int registered = 0, refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  bool hung = false;
  for (int i = 0; std::chrono::steady_clock::now() < deadline && !hung; ++i) {
    hung = !finishes_within(5s, [&] {
      try {
        const auto r = reg.register_path("case-1", target, "upload-" + std::to_string(i % 4), "alice");
        CHECK(r.sha256 == sha256_hex("the real upload"));
        ++registered;
      } catch (const invalid_argument&) {
        ++refused;
      } catch (const not_found&) { // between unlink and rename nothing is there: also fine
        ++refused;
      }
    }, [&] { unblock_fifo(fifo); });
  }
  stop = true;
  swapper.join();
  CHECK_MESSAGE(!hung, "a registration blocked on a FIFO swapped in mid-call");
  CHECK(registered + refused > 0);
  for (const auto& b : store->list()) CHECK(b.key == sha256_hex("the real upload"));
}

TEST_CASE("a path replaced after it was opened still registers the bytes that were opened") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto target = write_file(s.folder() / "in" / "target", "original bytes");
  const auto fifo = s.folder() / "in" / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const bool swap_in_fifo : {true, false}) {
    casecore::testing::step_gate gate;
    gate.pause_at("files.stage.opened");
    std::optional<registration> r;
    std::thread t([&] { r = reg.register_path("case-1", target, swap_in_fifo ? "a" : "b", "alice"); });
    REQUIRE(gate.wait_parked("files.stage.opened"));
    if (swap_in_fifo) {
      fs::rename(target, s.folder() / "in" / "moved");
      REQUIRE(::link(fifo.c_str(), target.c_str()) == 0);
    } else {
      fs::remove(target);
      write_file(target, "substituted bytes");
    }
    gate.release("files.stage.opened");
    t.join();
    REQUIRE(r);
    CHECK(r->sha256 == sha256_hex("original bytes"));
    CHECK(reg.read(r->id) == "original bytes");
    fs::remove(target);
    write_file(target, "original bytes");
  }
}

// ---- finding 7: a hash is not proof of possession ----------------------------------------------

TEST_CASE("a staged blob is accepted only by the registry that staged it") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry mine(db, *store), theirs(db, *store);
  std::istringstream in("case A's evidence");
  const auto staged = theirs.stage(in);
  CHECK(staged.created());
  CHECK(staged.size() == 17);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { mine.register_staged(tx, "case-B", staged, "stolen.pdf"); }), invalid_argument);
  CHECK(file_rows(db) == 0);
  const auto r = db.write([&](transaction& tx) { return theirs.register_staged(tx, "case-A", staged, "evidence.pdf"); });
  CHECK(r.size == 17);
  CHECK(r.sha256 == staged.sha256());
}

// ---- finding 8: content is verified --------------------------------------------------------------

TEST_CASE("content planted under a hash in the blob folder is replaced, not accepted, when that content registers") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto dir = s.folder() / "blobs";
  auto store = make_local_blob_store(dir);
  const std::string genuine = "genuine lab report";
  const auto sha = sha256_hex(genuine);
  // Someone who can write into the blob folder plants other bytes under the genuine content's hash.
  write_file(blob_file(dir, sha), "forged lab report!");
  file_registry reg(db, *store);
  std::istringstream in(genuine);
  const auto r = reg.register_stream("case-1", in, "report.pdf", "alice");
  CHECK(r.sha256 == sha);
  CHECK(store->get(sha) == genuine);
  CHECK(slurp(blob_file(dir, sha)) == genuine);
  CHECK(reg.read(r.id) == genuine);
  CHECK(reg.verify_blobs().empty());
}

TEST_CASE("reads are verified: a blob replaced after registration is reported, never returned") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto dir = s.folder() / "blobs";
  auto store = make_local_blob_store(dir);
  file_registry reg(db, *store);
  std::istringstream in("chain of custody");
  const auto r = reg.register_stream("case-1", in, "custody.txt", "alice");
  CHECK(reg.read(r.id) == "chain of custody");
  fs::remove(blob_file(dir, r.sha256));
  write_file(blob_file(dir, r.sha256), "chain of fiction");
  try {
    reg.read(r.id);
    FAIL("replaced content was returned");
  } catch (const error& e) {
    CHECK(e.code() == errc::backend_error);
  }
  CHECK(reg.verify_blobs() == std::vector<std::string>{r.sha256});
  fs::remove(blob_file(dir, r.sha256));
  CHECK_THROWS_AS(reg.read(r.id), error); // missing: a typed error too
  CHECK_THROWS_AS(reg.read(r.id + 1000), not_found);
  // A planted FIFO in the store cannot hang a reader either.
  REQUIRE(::mkfifo(blob_file(dir, r.sha256).c_str(), 0600) == 0);
  CHECK(finishes_within(10s, [&] { CHECK_THROWS_AS(reg.read(r.id), error); }, [&] { unblock_fifo(blob_file(dir, r.sha256)); }));
}

// ---- issue 10 defect 13: durability of the local store --------------------------------------------

CASECORE_CHILD(blob_commit_child) {
  auto store = make_local_blob_store(args.at(0));
  std::printf("%d\n", store->put(args.at(1), args.at(2)) ? 1 : 0);
  return 0;
}

namespace {

// Runs blob_commit_child with the fsync-logging shim preloaded; returns the fsynced paths.
std::vector<std::string> fsyncs_of_commit(const fs::path& store, const std::string& key, const std::string& content) {
  const auto log = store.parent_path() / ("fsync-" + detail::random_token().substr(0, 8) + ".log");
  casecore::testing::program_options o;
  o.extra_env = casecore::testing::preload_friendly_env(); // the shim is preloaded before ASan
  o.extra_env.push_back(std::string("LD_PRELOAD=") + CASECORE_FSYNC_SHIM_PATH);
  o.extra_env.push_back("CASECORE_FSYNC_LOG=" + log.string());
  const auto r = casecore::testing::run_program(casecore::testing::self_path(),
                                                {casecore::testing::child_flag("blob_commit_child"), store.string(), key, content}, o);
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  fs::remove(log);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

} // namespace

TEST_CASE("local blob store: a new shard's parent is fsynced, and an existing blob is made durable before 'not created'") {
  scratch_database s;
  const auto dir = fs::canonical(s.folder()) / "blobs";
  make_local_blob_store(dir); // folders exist; the shard does not yet
  const std::string key = "ab" + std::string(30, '1');
  auto first = fsyncs_of_commit(dir, key, "first writer");
  CAPTURE(first.size());
  CHECK(std::any_of(first.begin(), first.end(), [&](const std::string& p) { return p.starts_with((dir / "tmp").string()); }));
  CHECK_MESSAGE(contains(first, (dir / "objects").string()), "objects/ was not fsynced after creating shard 'ab'");
  CHECK(contains(first, (dir / "objects" / "ab").string()));

  // The second commit finds the key: the existing file and its folder must be synced (the first
  // writer may have crashed between link and fsync) before it reports "not created".
  auto second = fsyncs_of_commit(dir, key, "first writer");
  CHECK_MESSAGE(contains(second, (dir / "objects" / "ab" / key).string()), "the existing blob was not fsynced");
  CHECK_MESSAGE(contains(second, (dir / "objects" / "ab").string()), "the existing blob's folder was not fsynced");
}

TEST_CASE("registration of a Unix socket is a typed error and stores nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto path = s.folder() / "sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.native().size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  CHECK_THROWS_AS(reg.register_path("case-1", path, "x", "alice"), invalid_argument); // open(2) refuses it: ENXIO
  ::close(fd);
  CHECK(file_rows(db) == 0);
  CHECK(store->list().empty());
}
