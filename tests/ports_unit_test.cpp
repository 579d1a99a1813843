// Every shipped port implementation runs the conformance suites hosts run against theirs, plus the
// local store and the FTS5 index shared across processes. The suites themselves must be able to
// fail: a deliberately broken store is rejected.
#include <casecore/detail/token.hpp>
#include <casecore/sqlite/search_index.hpp>
#include <casecore/hash.hpp>
#include <casecore/open.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/ports/search_index.hpp>
#include <casecore/testing/conformance.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <set>

using namespace casecore;
namespace fs = std::filesystem;

namespace {

// A folder removed when the test ends.
struct temp_dir {
  fs::path path = casecore::testing::temp_root() / ("casecore-ports-" + detail::random_token().substr(0, 12));
  temp_dir() { fs::create_directories(path); }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path fresh() { return path / detail::random_token().substr(0, 8); }
};

// Breaks write-once: a second commit overwrites and claims to create.
class overwriting_store final : public blob_store {
  std::unique_ptr<blob_store> inner_ = make_memory_blob_store();
  class writer final : public blob_writer {
  public:
    explicit writer(blob_store& s) : s_(s) {}
  protected:
    void do_write(std::span<const std::byte> b) override { buf_.append(reinterpret_cast<const char*>(b.data()), b.size()); }
    bool do_commit(const std::string& key) override {
      s_.remove(key);
      return s_.put(key, buf_);
    }
    void do_abort() noexcept override { buf_.clear(); }
  private:
    blob_store& s_;
    std::string buf_;
  };

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*inner_); }
  std::string do_get(const std::string& k) override { return inner_->get(k); }
  bool do_exists(const std::string& k) override { return inner_->exists(k); }
  bool do_remove(const std::string& k) override { return inner_->remove(k); }
  std::vector<blob_info> do_list() override { return inner_->list(); }
};

// Accepts fenced writes but never checks the token: the "ports accept no token" defect.
class fence_ignoring_store final : public blob_store {
  std::unique_ptr<blob_store> inner_ = make_memory_blob_store();
  class writer final : public blob_writer {
  public:
    explicit writer(std::unique_ptr<blob_writer> w) : w_(std::move(w)) {}
  protected:
    void do_write(std::span<const std::byte> b) override { w_->write(b); }
    bool do_commit(const std::string& key) override { return w_->commit(key); }
    bool do_commit_fenced(const std::string& key, const fence&) override { return w_->commit(key); }
    void do_abort() noexcept override { w_->abort(); }
  private:
    std::unique_ptr<blob_writer> w_;
  };

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(inner_->open_writer()); }
  std::string do_get(const std::string& k) override { return inner_->get(k); }
  bool do_exists(const std::string& k) override { return inner_->exists(k); }
  bool do_remove(const std::string& k) override { return inner_->remove(k); }
  bool do_remove_fenced(const std::string& k, const fence&) override { return inner_->remove(k); }
  std::vector<blob_info> do_list() override { return inner_->list(); }
};

// Same defect for the search index.
class fence_ignoring_index final : public search_index {
  std::unique_ptr<search_index> inner_ = make_memory_search_index();

protected:
  void do_index(std::span<const search_document> d) override { inner_->index(d); }
  void do_index_fenced(std::span<const search_document> d, const fence&) override { inner_->index(d); }
  std::size_t do_remove_file(std::int64_t f) override { return inner_->remove_file(f); }
  std::size_t do_remove_file_fenced(std::int64_t f, const fence&) override { return inner_->remove_file(f); }
  std::size_t do_count(std::optional<std::int64_t> f) override { return inner_->count(f); }
  std::vector<std::string> do_query(const std::vector<std::string>& w, std::size_t limit) override {
    std::string q;
    for (const auto& x : w) q += x + " ";
    return inner_->query(q, limit);
  }
};

// One broken rule at a time, to prove the blob suite names each one.
enum class blob_defect { get_absent_returns_empty, get_absent_throws_runtime_error, get_absent_wrong_code, exists_always, list_drops_key,
                         list_without_sizes, list_without_times };
class defective_store final : public blob_store {
  std::unique_ptr<blob_store> inner_ = make_memory_blob_store();
  blob_defect d_;

public:
  explicit defective_store(blob_defect d) : d_(d) {}

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return inner_->open_writer(); }
  std::string do_get(const std::string& k) override {
    if (!inner_->exists(k)) {
      if (d_ == blob_defect::get_absent_returns_empty) return {};
      if (d_ == blob_defect::get_absent_throws_runtime_error) throw std::runtime_error("driver said no");
      if (d_ == blob_defect::get_absent_wrong_code) raise(errc::backend_error, "not there");
    }
    return inner_->get(k);
  }
  bool do_exists(const std::string& k) override { return d_ == blob_defect::exists_always || inner_->exists(k); }
  bool do_remove(const std::string& k) override { return inner_->remove(k); }
  std::vector<blob_info> do_list() override {
    auto l = inner_->list();
    if (d_ == blob_defect::list_drops_key && !l.empty()) l.pop_back();
    for (auto& b : l) {
      if (d_ == blob_defect::list_without_sizes) b.size = 0;
      if (d_ == blob_defect::list_without_times) b.modified_us = 0;
    }
    return l;
  }
};

} // namespace

TEST_CASE("conformance: memory blob store") {
  CHECK_NOTHROW(casecore::testing::check_blob_store([] { return make_memory_blob_store(); }));
}

TEST_CASE("conformance: local blob store") {
  temp_dir d;
  CHECK_NOTHROW(casecore::testing::check_blob_store([&] { return make_local_blob_store(d.fresh()); }));
}

TEST_CASE("conformance: memory search index") {
  CHECK_NOTHROW(casecore::testing::check_search_index([] { return make_memory_search_index(); }));
}

TEST_CASE("conformance: SQLite FTS5 search index") {
  temp_dir d;
  CHECK_NOTHROW(casecore::testing::check_search_index([&] { return make_sqlite_search_index(d.fresh()); }));
}

TEST_CASE("conformance: in-process task transport") {
  CHECK_NOTHROW(casecore::testing::check_task_transport([] { return make_inprocess_task_transport(); }));
}

TEST_CASE("the conformance suite rejects a store that overwrites blobs") {
  CHECK_THROWS_AS(casecore::testing::check_blob_store([] { return std::make_unique<overwriting_store>(); }),
                  casecore::testing::conformance_failure);
}

TEST_CASE("the conformance suites reject ports that accept fences without checking them") {
  CHECK_THROWS_WITH_AS(casecore::testing::check_blob_store([] { return std::make_unique<fence_ignoring_store>(); }),
                       doctest::Contains("older than the scope's highest is refused"), casecore::testing::conformance_failure);
  CHECK_THROWS_WITH_AS(casecore::testing::check_search_index([] { return std::make_unique<fence_ignoring_index>(); }),
                       doctest::Contains("older than the scope's highest is refused"), casecore::testing::conformance_failure);
}

TEST_CASE("a port that does not implement fencing refuses fenced writes with unsupported, writing nothing") {
  overwriting_store s; // implements only the unfenced hooks
  CHECK_THROWS_AS(s.put("k", "v", fence{"file:1", 3}), casecore::error);
  try {
    s.put("k", "v", fence{"file:1", 3});
  } catch (const casecore::error& e) {
    CHECK(e.code() == errc::unsupported);
  }
  CHECK_FALSE(s.exists("k"));
  CHECK(s.put("k", "v", fence{"file:1", 0})); // token 0 is unfenced: the plain hooks
}

TEST_CASE("the local store leaves no temporary behind and keeps blobs in hashed folders") {
  temp_dir d;
  auto s = make_local_blob_store(d.path);
  s->put("abcdef", "x");
  { auto w = s->open_writer(); w->write(std::as_bytes(std::span("partial", 7))); }
  CHECK(fs::is_empty(d.path / "tmp"));
  CHECK(fs::exists(d.path / "objects" / "ab" / "abcdef"));
}

CASECORE_CHILD(blob_put_child) {
  auto s = make_local_blob_store(args.at(0));
  int created = 0;
  for (int k = 0; k < 20; ++k)
    if (s->put("shared-" + std::to_string(k), std::string(50000 + k, static_cast<char>('a' + k % 26)))) ++created;
  std::printf("%d\n", created);
  return 0;
}

TEST_CASE("processes putting the same keys into one local store create each exactly once") {
  temp_dir d;
  int created = 0;
  for (const auto& r : casecore::testing::run_children("blob_put_child", 4, {d.path.string()})) {
    CHECK(r.exit_code == 0);
    created += std::stoi(r.output);
  }
  CHECK(created == 20);
  auto s = make_local_blob_store(d.path);
  CHECK(s->list().size() == 20);
  CHECK(s->get("shared-3") == std::string(50003, 'd'));
}

// Tokens i+1, i+5, i+9 ... for child i of 4: every token 1..40 is held by exactly one process.
CASECORE_CHILD(fenced_blob_child) {
  auto s = make_local_blob_store(args.at(0));
  const int me = std::stoi(args.at(1));
  int refused = 0;
  for (std::int64_t token = me + 1; token <= 40; token += 4) {
    const fence f{"file:7", token};
    try {
      s->remove("report", f);
      s->put("report", "written by holder " + std::to_string(token), f);
    } catch (const lease_lost&) {
      ++refused;
    }
  }
  std::printf("%d\n", refused);
  return 0;
}

TEST_CASE("processes racing fenced writes on one local store leave the newest holder's blob") {
  temp_dir d;
  make_local_blob_store(d.path);
  for (const auto& r : casecore::testing::run_children("fenced_blob_child", 4, {d.path.string()})) CHECK(r.exit_code == 0);
  auto s = make_local_blob_store(d.path);
  CHECK(s->get("report") == "written by holder 40");
  CHECK_THROWS_AS(s->put("late", "x", fence{"file:7", 39}), lease_lost);
  CHECK_FALSE(s->exists("late"));
  CHECK(fs::is_empty(d.path / "tmp"));
}

CASECORE_CHILD(index_child) {
  auto ix = make_sqlite_search_index(args.at(0));
  const int me = std::stoi(args.at(1));
  for (int round = 0; round < 10; ++round) {
    std::vector<search_document> batch;
    for (int i = 0; i < 20; ++i) batch.push_back({"doc-" + std::to_string((me * 13 + round * 7 + i) % 60), 1, "process shared text"});
    ix->index(batch);
  }
  return 0;
}

TEST_CASE("processes sharing one FTS5 index file never duplicate a document id") {
  temp_dir d;
  const auto file = d.path / "search.db";
  make_sqlite_search_index(file); // create the schema once, so children only write
  for (const auto& r : casecore::testing::run_children("index_child", 4, {file.string()})) CHECK(r.exit_code == 0);
  auto ix = make_sqlite_search_index(file);
  std::set<std::string> expected;
  for (int me = 0; me < 4; ++me)
    for (int round = 0; round < 10; ++round)
      for (int i = 0; i < 20; ++i) expected.insert("doc-" + std::to_string((me * 13 + round * 7 + i) % 60));
  CHECK(ix->count() == expected.size());
  CHECK(ix->query("shared process", 1000).size() == expected.size());
}

TEST_CASE("conformance: local blob store with fsync off (throwaway data) keeps the same contract") {
  temp_dir d;
  local_blob_store_options o;
  o.fsync = false;
  CHECK_NOTHROW(casecore::testing::check_blob_store([&] { return make_local_blob_store(d.fresh(), o); }));
}

namespace {
errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const casecore::error& e) {
    return e.code();
  }
  FAIL("no casecore::error thrown");
  return errc::internal;
}
} // namespace

TEST_CASE("the local store refuses planted links, folders and files where blobs or shards belong, leaving no temporary") {
  temp_dir d;
  auto s = make_local_blob_store(d.path);
  CHECK(code_of([] { make_local_blob_store(""); }) == errc::invalid_argument);
  fs::create_directories(d.path / "objects" / "li");
  std::ofstream(d.path / "elsewhere") << "outside the store";
  fs::create_symlink(d.path / "elsewhere", d.path / "objects" / "li" / "linked");
  CHECK(code_of([&] { s->get("linked"); }) == errc::backend_error); // never followed
  CHECK(s->exists("linked"));                                           // but it is there: not "not found"
  fs::create_directories(d.path / "objects" / "di" / "dirkey");
  CHECK(code_of([&] { s->remove("dirkey"); }) == errc::backend_error);
  CHECK(fs::is_directory(d.path / "objects" / "di" / "dirkey"));
  std::ofstream(d.path / "objects" / "fi") << "a file where the shard folder goes";
  CHECK(code_of([&] { s->put("fi-key", "content"); }) == errc::backend_error);
  CHECK(fs::is_empty(d.path / "tmp"));
  CHECK(s->put("ok-key", "content")); // the store itself is fine
  CHECK(s->get("ok-key") == "content");
}

TEST_CASE("the local store reports a vanished objects/ or tmp/ folder as backend_error, and a dangling root link") {
  temp_dir d;
  auto s = make_local_blob_store(d.path / "store");
  s->put("k1", "v");
  fs::remove_all(d.path / "store" / "tmp");
  CHECK(code_of([&] { s->put("k2", "v"); }) == errc::backend_error);
  CHECK_FALSE(s->exists("k2"));
  fs::remove_all(d.path / "store" / "objects");
  CHECK(code_of([&] { s->list(); }) == errc::backend_error);
  fs::create_directory_symlink(d.path / "nowhere", d.path / "dangling");
  CHECK(code_of([&] { make_local_blob_store(d.path / "dangling"); }) == errc::backend_error);
  CHECK_FALSE(fs::exists(d.path / "nowhere"));
}

TEST_CASE("fence marks: a corrupt or unopenable mark refuses the fenced write; without fsync a new mark still fences") {
  temp_dir d;
  local_blob_store_options o;
  o.fsync = false;
  auto s = make_local_blob_store(d.path, o);
  CHECK(s->put("a1", "one", fence{"file:1", 5}));
  CHECK(code_of([&] { s->put("a2", "two", fence{"file:1", 4}); }) == errc::lease_lost);
  CHECK(s->put("a3", "three", fence{"file:1", 5})); // the same token again is the holder itself
  CHECK_FALSE(s->exists("a2"));
  const auto mark = d.path / "fences" / sha256_hex("file:2");
  std::ofstream(mark) << "12abc";
  CHECK(code_of([&] { s->put("b1", "x", fence{"file:2", 99}); }) == errc::backend_error);
  CHECK(code_of([&] { s->remove("a1", fence{"file:2", 99}); }) == errc::backend_error);
  CHECK_FALSE(s->exists("b1"));
  CHECK(s->exists("a1"));
  fs::create_directories(d.path / "fences" / sha256_hex("file:3"));
  CHECK(code_of([&] { s->put("c1", "x", fence{"file:3", 1}); }) == errc::backend_error);
  CHECK_FALSE(s->exists("c1"));
  CHECK(fs::is_empty(d.path / "tmp"));
}

TEST_CASE("the FTS5 index reports an unopenable path, a non-database file and a damaged file as typed errors, never driver ones") {
  temp_dir d;
  CHECK(code_of([] { make_sqlite_search_index(""); }) == errc::invalid_argument);
  fs::create_directories(d.path / "a-folder");
  CHECK(code_of([&] { make_sqlite_search_index(d.path / "a-folder"); }) == errc::backend_error);
  std::ofstream(d.path / "notes.txt") << std::string(8192, 'n'); // not a database
  CHECK(code_of([&] { make_sqlite_search_index(d.path / "notes.txt"); }) == errc::backend_error);

  const auto file = d.path / "index.db";
  auto ix = make_sqlite_search_index(file);
  ix->index(std::vector<search_document>{{"a", 1, "alpha"}});
  {
    auto raw = casecore::open("sqlite://" + file.string());
    raw.write([](transaction& tx) { tx.exec_script("DROP TABLE search_docs; DROP TABLE search_text; DROP TABLE search_fences"); });
  }
  CHECK(code_of([&] { ix->index(std::vector<search_document>{{"b", 1, "beta"}}); }) == errc::backend_error);
  CHECK(code_of([&] { ix->index(std::vector<search_document>{{"b", 1, "beta"}}, fence{"file:1", 3}); }) == errc::backend_error);
  CHECK(code_of([&] { ix->remove_file(1); }) == errc::backend_error);
  CHECK(code_of([&] { ix->count(); }) == errc::backend_error);
  CHECK(code_of([&] { ix->query("alpha"); }) == errc::backend_error);
}

TEST_CASE("the blob conformance suite names the rule a store breaks, including how a wrong error was raised") {
  const std::vector<std::pair<blob_defect, std::string>> cases = {
      {blob_defect::get_absent_returns_empty, "get() of an absent key throws not_found (did not throw)"},
      {blob_defect::get_absent_throws_runtime_error, "(threw a non-casecore exception: driver said no)"},
      {blob_defect::get_absent_wrong_code, "get() of an absent key throws not_found (threw backend_error: "},
      {blob_defect::exists_always, "exists() is false for an absent key"},
      {blob_defect::list_drops_key, "list() returns every key in order"},
      {blob_defect::list_without_sizes, "list() reports blob sizes"},
      {blob_defect::list_without_times, "list() reports a modification time"},
  };
  for (const auto& [defect, rule] : cases) {
    CAPTURE(rule);
    CHECK_THROWS_WITH_AS(casecore::testing::check_blob_store([d = defect] { return std::make_unique<defective_store>(d); }),
                         doctest::Contains(rule.c_str()), casecore::testing::conformance_failure);
  }
}
