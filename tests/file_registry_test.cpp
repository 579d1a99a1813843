// Idempotent file registration on SQLite and PostgreSQL: duplicates decided by the unique key,
// content-addressed blobs, no dangling row and no orphan blob, bad input refused before anything is
// written; storms from threads and processes.
#include <casecore/detail/token.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/ports/search_index.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <casecore/testing/steps.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace casecore;
using casecore::testing::scratch_database;
namespace fs = std::filesystem;

namespace {

fs::path write_file(const fs::path& dir, const std::string& name, const std::string& content) {
  fs::create_directories(dir);
  const auto p = dir / name;
  std::ofstream(p, std::ios::binary).write(content.data(), static_cast<std::streamsize>(content.size()));
  return p;
}

std::string content_of(int i) { return "content #" + std::to_string(i) + std::string(1000 + static_cast<std::size_t>(i) * 37, static_cast<char>('a' + i % 26)); }

std::int64_t file_rows(database& db) {
  return db.read([](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_files"); });
}

std::set<std::string> referenced_keys(database& db) {
  return db.read([](transaction& tx) {
    std::set<std::string> out;
    for (auto r : tx.exec("SELECT DISTINCT blob_key FROM casecore_files")) out.insert(r.get<std::string>(0));
    return out;
  });
}

std::set<std::string> stored_keys(blob_store& s) {
  std::set<std::string> out;
  for (const auto& b : s.list()) out.insert(b.key);
  return out;
}

// The invariant the storms check: one row per identity, every row's blob present, and (after a
// sweep) no blob that no row references.
void check_consistent(database& db, blob_store& store) {
  CHECK(db.read([](transaction& tx) {
          return tx.query_one<std::int64_t>("SELECT count(*) FROM (SELECT case_id, sha256, original_name FROM casecore_files "
                                            "GROUP BY case_id, sha256, original_name HAVING count(*) > 1) d");
        }) == 0);
  const auto refs = referenced_keys(db);
  for (const auto& k : refs) CHECK_MESSAGE(store.exists(k), "row points at missing blob " << k);
  CHECK(stored_keys(store) == refs);
}

// A store that fails part-way through writing (disk full, network drop).
class failing_store final : public blob_store {
public:
  std::unique_ptr<blob_store> inner = make_memory_blob_store();
  std::uint64_t fail_after = 5000;
  bool fail_commit = false;

private:
  class writer final : public blob_writer {
  public:
    explicit writer(failing_store& s) : s_(s), inner_(s.inner->open_writer()) {}
  protected:
    void do_write(std::span<const std::byte> b) override {
      written_ += b.size();
      if (written_ > s_.fail_after) raise(errc::backend_error, "disk full");
      inner_->write(b);
    }
    bool do_commit(const std::string& key) override {
      if (s_.fail_commit) raise(errc::backend_error, "rename failed");
      return inner_->commit(key);
    }
    void do_abort() noexcept override { inner_->abort(); }
  private:
    failing_store& s_;
    std::unique_ptr<blob_writer> inner_;
    std::uint64_t written_ = 0;
  };

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*this); }
  std::string do_get(const std::string& k) override { return inner->get(k); }
  bool do_exists(const std::string& k) override { return inner->exists(k); }
  bool do_remove(const std::string& k) override { return inner->remove(k); }
  std::vector<blob_info> do_list() override { return inner->list(); }
};

} // namespace

TEST_CASE("a file registers once per case and name; duplicates name the first registrant") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto path = write_file(s.folder() / "in", "report.pdf", content_of(1));
  const auto first = reg.register_path("case-1", path, "report.pdf", "alice");
  CHECK(first.status == registration_status::registered);
  CHECK(first.registered_by == "alice");
  CHECK(first.sha256 == sha256_hex(content_of(1)));
  CHECK(first.size == content_of(1).size());
  const auto again = reg.register_path("case-1", path, "report.pdf", "bob");
  CHECK(again.status == registration_status::duplicate);
  CHECK(again.id == first.id);
  CHECK(again.registered_by == "alice");
  CHECK(again.registered_at == first.registered_at);
  CHECK(reg.register_path("case-1", path, "copy of report.pdf", "bob").status == registration_status::registered);
  CHECK(reg.register_path("case-2", path, "report.pdf", "bob").status == registration_status::registered);
  CHECK(file_rows(db) == 3);
  CHECK(store->list().size() == 1); // content-addressed: stored once for three registrations
  CHECK(store->get(first.sha256) == content_of(1));
  const auto rec = reg.find(first.id);
  REQUIRE(rec);
  CHECK(rec->original_name == "report.pdf");
  CHECK(rec->blob_key == first.sha256);
  CHECK(reg.files_of_case("case-1").size() == 2);
  CHECK_FALSE(reg.find(first.id + 1000));
}

TEST_CASE("a stream is hashed and stored in one pass, in chunks") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_memory_blob_store();
  file_registry_options o;
  o.chunk_size = 4096;
  file_registry reg(db, *store, o);
  std::string big(300000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + (i >> 12));
  std::istringstream in(big);
  const auto r = reg.register_stream("c", in, "big.bin", "alice");
  CHECK(r.status == registration_status::registered);
  CHECK(r.sha256 == sha256_hex(big));
  CHECK(store->get(r.sha256) == big);
}

TEST_CASE("names are metadata: traversal names are stored verbatim and never touch the filesystem") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto blobs = s.folder() / "blobs";
  auto store = make_local_blob_store(blobs);
  file_registry reg(db, *store);
  const auto path = write_file(s.folder() / "in", "f", content_of(2));
  for (const std::string name : {"../../etc/passwd", "a/b\\c", "..", "/abs/path", "Müller – Bericht.pdf"}) {
    const auto r = reg.register_path("c", path, name, "alice");
    CHECK(r.status == registration_status::registered);
    CHECK(reg.find(r.id)->original_name == name);
  }
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(s.folder())) {
    if (!e.is_regular_file()) continue;
    const auto rel = fs::relative(e.path(), s.folder()).string();
    if (rel.rfind("blobs/", 0) == 0) {
      CHECK(is_sha256_hex(e.path().filename().string()));
      ++files;
    }
  }
  CHECK(files == 1);
  CHECK_FALSE(fs::exists(s.folder() / "etc"));
}

TEST_CASE("bad input is a typed error and writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry_options o;
  o.max_size = 1000;
  file_registry reg(db, *store, o);
  const auto ok = write_file(s.folder() / "in", "ok", "fine");
  for (const std::string& name : {std::string(), std::string(256, 'n'), std::string("a\0b", 3), std::string("a\nb"), std::string("tab\there"), std::string("del\x7f")})
    CHECK_THROWS_AS(reg.register_path("c", ok, name, "alice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path("", ok, "n", "alice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path(std::string(201, 'c'), ok, "n", "alice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path("c", ok, "n", "al\nice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path("c", write_file(s.folder() / "in", "empty", ""), "n", "alice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path("c", write_file(s.folder() / "in", "huge", std::string(1001, 'h')), "n", "alice"), invalid_argument);
  std::istringstream huge_stream(std::string(5000, 'h'));
  CHECK_THROWS_AS(reg.register_stream("c", huge_stream, "n", "alice"), invalid_argument);
  std::istringstream empty_stream("");
  CHECK_THROWS_AS(reg.register_stream("c", empty_stream, "n", "alice"), invalid_argument);
  CHECK_THROWS_AS(reg.register_path("c", s.folder() / "in" / "missing", "n", "alice"), not_found);
  CHECK_THROWS_AS(reg.register_path("c", s.folder() / "in", "n", "alice"), invalid_argument); // a directory
  if (::geteuid() != 0) { // root reads anything
    const auto locked = write_file(s.folder() / "in", "locked", "secret");
    fs::permissions(locked, fs::perms::none);
    CHECK_THROWS_AS(reg.register_path("c", locked, "n", "alice"), invalid_argument);
  }
  // A staged blob is accepted only from the registry that staged it (this one is from a registry on
  // another store; it cannot be forged: staged_blob has no public constructor).
  auto elsewhere = make_memory_blob_store();
  file_registry other(db, *elsewhere);
  std::istringstream other_bytes("fine");
  const auto foreign = other.stage(other_bytes);
  CHECK_THROWS_AS(db.write([&](transaction& tx) { reg.register_staged(tx, "c", foreign, "n"); }), invalid_argument);
  CHECK(file_rows(db) == 0);
  CHECK(store->list().empty());
  CHECK(fs::is_empty(s.folder() / "blobs" / "tmp"));
  CHECK_THROWS_AS(file_registry(db, *store, file_registry_options{0, 1024}), invalid_argument);
}

TEST_CASE("a blob store that fails mid-write or at commit leaves no blob and no row") {
  scratch_database s;
  auto db = s.open_migrated();
  failing_store store;
  file_registry_options o;
  o.chunk_size = 1000;
  file_registry reg(db, store, o);
  std::istringstream in(std::string(20000, 'x'));
  CHECK_THROWS_AS(reg.register_stream("c", in, "n", "alice"), error);
  store.fail_after = 1 << 30;
  store.fail_commit = true;
  std::istringstream in2(std::string(20000, 'y'));
  CHECK_THROWS_AS(reg.register_stream("c", in2, "n", "alice"), error);
  CHECK(file_rows(db) == 0);
  CHECK(store.list().empty());
  store.fail_commit = false;
  std::istringstream in3(std::string(20000, 'z'));
  CHECK(reg.register_stream("c", in3, "n", "alice").status == registration_status::registered);
}

TEST_CASE("a rolled-back registration leaves an orphan that the sweep removes; registered blobs stay") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry reg(db, *store);
  const auto kept = reg.register_path("c", write_file(s.folder() / "in", "a", content_of(1)), "a", "alice");
  const auto staged = reg.stage(write_file(s.folder() / "in", "b", content_of(2)));
  CHECK(staged.created());
  CHECK_THROWS_AS(db.write([&](transaction& tx) {
    reg.register_staged(tx, "c", staged, "b");
    throw std::runtime_error("the business write fails after the registration");
  }),
                  std::runtime_error);
  CHECK(file_rows(db) == 1);
  CHECK(store->exists(staged.sha256()));
  CHECK(reg.sweep_orphans(std::chrono::hours(1)) == 0); // inside the grace period
  CHECK(reg.sweep_orphans(std::chrono::milliseconds(0)) == 1);
  CHECK_FALSE(store->exists(staged.sha256()));
  CHECK(store->exists(kept.sha256));
  // A staged blob that a sweep removed cannot be registered: the row would dangle.
  CHECK_THROWS_AS(db.write([&](transaction& tx) { reg.register_staged(tx, "c", staged, "b"); }), not_found);
  CHECK(file_rows(db) == 1);
  check_consistent(db, *store);
}

TEST_CASE("a blob another writer stored and a sweep removed while this registration staged it is staged again") {
  // Regression (the storm test below under TSan): A finds no blob; another writer stores the same
  // content (no row points at it yet); A's link then meets that blob; a sweep removes it before A
  // reads it back to verify. A's register_path used to fail with the store's not_found.
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs", {false});
  file_registry reg(db, *store);
  const auto path = write_file(s.folder() / "in", "f", content_of(7));
  std::optional<registration> got;
  std::string failed;
  {
    casecore::testing::step_gate gate;
    std::thread a([&] {
      try {
        got = reg.register_path("c", path, "f", "alice");
      } catch (const std::exception& e) {
        failed = e.what();
      }
    });
    gate.pause_at("files.stage.checked", 1, a.get_id());
    gate.pause_at("files.stage.committed", 1, a.get_id());
    REQUIRE(gate.wait_parked("files.stage.checked"));
    REQUIRE(reg.stage(path).created()); // the other writer: an orphan until a row points at it
    gate.release("files.stage.checked");
    REQUIRE(gate.wait_parked("files.stage.committed"));
    CHECK(reg.sweep_orphans(std::chrono::milliseconds(0)) == 1);
    gate.release("files.stage.committed");
    a.join();
  }
  CHECK_MESSAGE(failed.empty(), failed);
  REQUIRE(got);
  CHECK(got->status == registration_status::registered);
  CHECK(store->exists(got->sha256));
  check_consistent(db, *store);
}

TEST_CASE("storm: threads register overlapping files, roll some back, while a sweeper runs") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs", {false});
  file_registry reg(db, *store);
  constexpr int contents = 6;
  std::vector<fs::path> paths;
  for (int i = 0; i < contents + 1; ++i) paths.push_back(write_file(s.folder() / "in", "f" + std::to_string(i), content_of(i)));
  std::atomic<int> registered{0};
  std::atomic<bool> done{false};
  std::atomic<std::size_t> swept{0};
  std::thread sweeper([&] {
    while (!done) {
      swept += reg.sweep_orphans(std::chrono::milliseconds(0)); // grace 0: the harshest sweeper
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  struct stop_sweeper { // join the sweeper even when a racer throws (a joinable thread terminates)
    std::atomic<bool>& done;
    std::thread& sweeper;
    ~stop_sweeper() {
      done = true;
      if (sweeper.joinable()) sweeper.join();
    }
  } stopper{done, sweeper};
  casecore::testing::race(8, [&](std::size_t t) {
    for (int k = 0; k < contents * 4; ++k) {
      const int j = (k + static_cast<int>(t) * 5) % (contents * 4);
      const int c = j % contents;
      const std::string case_id = "case-" + std::to_string(j / contents % 2);
      const std::string name = "name-" + std::to_string(j / (contents * 2));
      if (reg.register_path(case_id, paths[static_cast<std::size_t>(c)], name, "t" + std::to_string(t)).status == registration_status::registered)
        ++registered;
      if (k % 5 == 0) { // a forced rollback of a content nobody keeps
        try {
          const auto staged = reg.stage(paths[contents]);
          db.write([&](transaction& tx) {
            reg.register_staged(tx, "case-x", staged, "doomed");
            throw std::runtime_error("rollback");
          });
        } catch (const std::exception&) {
        }
      }
    }
  });
  done = true;
  sweeper.join();
  CHECK(registered == contents * 4);
  CHECK(file_rows(db) == contents * 4);
  reg.sweep_orphans(std::chrono::milliseconds(0));
  check_consistent(db, *store);
  CHECK_FALSE(store->exists(sha256_hex(content_of(contents))));
}

CASECORE_CHILD(register_child) {
  auto db = casecore::open(args.at(0));
  auto store = make_local_blob_store(args.at(1), {false});
  file_registry reg(db, *store);
  int registered = 0;
  const int me = std::stoi(args.at(3));
  for (int k = 0; k < 12; ++k) {
    const int j = (k + me * 5) % 12;
    const auto path = fs::path(args.at(2)) / ("f" + std::to_string(j % 6));
    if (reg.register_path("case", path, "name-" + std::to_string(j / 6), "p" + args.at(3)).status == registration_status::registered)
      ++registered;
    if (k % 4 == 0) {
      try {
        const auto staged = reg.stage(fs::path(args.at(2)) / "f6");
        db.write([&](transaction& tx) {
          reg.register_staged(tx, "case", staged, "doomed");
          throw std::runtime_error("rollback");
        });
      } catch (const std::exception&) {
      }
    }
  }
  std::printf("%d\n", registered);
  return 0;
}

TEST_CASE("storm: processes register the same files; exactly one wins each identity") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto in = s.folder() / "in";
  for (int i = 0; i < 7; ++i) write_file(in, "f" + std::to_string(i), content_of(i));
  const auto blobs = s.folder() / "blobs";
  int registered = 0;
  for (const auto& r : casecore::testing::run_children("register_child", 4, {s.url(), blobs.string(), in.string()})) {
    CHECK(r.exit_code == 0);
    registered += std::stoi(r.output);
  }
  CHECK(registered == 12);
  CHECK(file_rows(db) == 12);
  auto store = make_local_blob_store(blobs);
  file_registry reg(db, *store);
  CHECK(store->exists(sha256_hex(content_of(6)))); // the rolled-back content is an orphan until swept
  CHECK(reg.sweep_orphans(std::chrono::milliseconds(0)) == 1);
  check_consistent(db, *store);
}

TEST_CASE("re-indexing a registered file with event ids never duplicates documents") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_memory_blob_store();
  file_registry reg(db, *store);
  std::istringstream in("alpha event\nbeta event\ngamma event\n");
  const auto file = reg.register_stream("c", in, "log.txt", "alice");
  auto index = make_memory_search_index();
  for (int run = 0; run < 2; ++run) {
    std::istringstream lines(store->get(file.sha256));
    std::vector<search_document> docs;
    std::string line;
    for (int pos = 0; std::getline(lines, line); ++pos) docs.push_back({event_id(file.id, std::to_string(pos)), file.id, line});
    index->index(docs);
  }
  CHECK(index->count() == 3);
  CHECK(index->query("event").size() == 3);
}

TEST_CASE("a registry refuses a chunk size of 0 or above 64 MiB, and register_staged outside a write transaction") {
  scratch_database s;
  auto db = s.open_migrated();
  auto store = make_local_blob_store(s.folder() / "blobs");
  file_registry_options o;
  o.chunk_size = 0;
  CHECK_THROWS_AS([&] { file_registry r(db, *store, o); }(), invalid_argument);
  o.chunk_size = (64u << 20) + 1;
  CHECK_THROWS_AS([&] { file_registry r(db, *store, o); }(), invalid_argument);
  o.chunk_size = 1; // the smallest buffer still registers the right bytes
  file_registry reg(db, *store, o);
  std::istringstream in(content_of(3));
  const auto staged = reg.stage(in);
  CHECK_THROWS_AS(db.read([&](transaction& tx) { reg.register_staged(tx, "case-1", staged, "x.bin"); }), invalid_argument);
  CHECK(reg.files_of_case("case-1").empty());
  const auto r = db.write([&](transaction& tx) { return reg.register_staged(tx, "case-1", staged, "x.bin"); });
  CHECK(r.sha256 == sha256_hex(content_of(3)));
  CHECK(reg.read(r.id) == content_of(3));
}
