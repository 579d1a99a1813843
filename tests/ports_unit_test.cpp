// Every shipped port implementation runs the conformance suites hosts run against theirs, plus the
// local store and the FTS5 index shared across processes. The suites themselves must be able to
// fail: a deliberately broken store is rejected.
#include <casecore/detail/token.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/testing/conformance.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <doctest/doctest.h>

#include <cstdio>
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
