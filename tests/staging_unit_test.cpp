// Per-import staging folders: unique under concurrency (threads and processes), cleanup removes only
// its own, crashed imports are found and reclaimed.
#include <casecore/detail/token.hpp>
#include <casecore/staging.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <fstream>
#include <mutex>
#include <set>

using namespace casecore;
namespace fs = std::filesystem;

namespace {
struct temp_root {
  fs::path path = casecore::testing::temp_root() / ("casecore-staging-" + detail::random_token().substr(0, 12));
  ~temp_root() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
} // namespace

TEST_CASE("staging folders of concurrent imports never collide, even with the same import id") {
  temp_root root;
  std::mutex m;
  std::set<fs::path> seen;
  std::vector<staging_area> areas;
  casecore::testing::race(16, [&](std::size_t) {
    auto a = staging_area::create(root.path, "import-1");
    std::ofstream(a.path() / "data.csv") << "x";
    std::lock_guard g(m);
    seen.insert(a.path());
    areas.push_back(std::move(a));
  });
  CHECK(seen.size() == 16);
  CHECK(areas.front().remove());
  CHECK(std::distance(fs::directory_iterator(root.path), fs::directory_iterator()) == 15); // only its own
}

TEST_CASE("cleanup refuses a folder whose owner file is not its own") {
  temp_root root;
  auto a = staging_area::create(root.path, "imp");
  const auto p = a.path();
  std::ofstream(p / ".casecore-owner", std::ios::trunc) << "someone-else\n1\nhost\n0\n";
  CHECK_FALSE(a.remove());
  CHECK(fs::exists(p));
}

TEST_CASE("the destructor removes the folder unless kept; heartbeat refreshes the owner file") {
  temp_root root;
  fs::path gone, kept;
  {
    auto a = staging_area::create(root.path, "imp");
    gone = a.path();
    const auto before = staging_area::read_owner(gone).heartbeat_us;
    a.heartbeat();
    CHECK(staging_area::read_owner(gone).heartbeat_us >= before);
    CHECK(staging_area::read_owner(gone).token == a.token());
    auto b = staging_area::create(root.path, "imp");
    kept = b.path();
    b.keep();
  }
  CHECK_FALSE(fs::exists(gone));
  CHECK(fs::exists(kept));
}

TEST_CASE("bad import ids are refused and create nothing") {
  temp_root root;
  for (const std::string& bad : {std::string(), std::string("../x"), std::string("a/b"), std::string(65, 'i'), std::string("a b")})
    CHECK_THROWS_AS(staging_area::create(root.path, bad), invalid_argument);
  CHECK((!fs::exists(root.path) || fs::is_empty(root.path)));
}

CASECORE_CHILD(staging_child) {
  auto a = staging_area::create(args.at(0), "bulk");
  std::ofstream(a.path() / "part") << "half-imported";
  a.keep(); // then "crash": the process exits without cleanup
  std::printf("%s\n", a.path().c_str());
  return 0;
}

TEST_CASE("a crashed import's folder is found and reclaimed; live imports are left alone") {
  temp_root root;
  std::set<std::string> crashed;
  for (const auto& r : casecore::testing::run_children("staging_child", 4, {root.path.string()})) {
    CHECK(r.exit_code == 0);
    crashed.insert(r.output.substr(0, r.output.find('\n')));
  }
  CHECK(crashed.size() == 4); // distinct across processes
  auto live = staging_area::create(root.path, "bulk");
  const auto reclaimed = staging_area::reclaim_stale(root.path, std::chrono::hours(1));
  std::set<std::string> got;
  for (const auto& p : reclaimed) got.insert(p.string());
  CHECK(got == crashed);
  CHECK(fs::exists(live.path()));
  CHECK(staging_area::reclaim_stale(root.path, std::chrono::hours(1)).empty());
}

namespace {
// Write an owner file by hand, as another process or host would have left it.
void plant_owner(const fs::path& folder, const std::string& text) { std::ofstream(folder / ".casecore-owner", std::ios::trunc) << text; }
// The code of the casecore error `f` throws (fails the test when it throws none).
template <class F> errc code_of(F&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code();
  }
  FAIL("no casecore::error thrown");
  return errc::internal;
}
micros now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
} // namespace

TEST_CASE("a malformed or truncated owner file reads as not_found, never as a half-parsed owner") {
  temp_root root;
  auto a = staging_area::create(root.path, "imp");
  plant_owner(a.path(), "tok\nnot-a-pid\nhost\n12\n");
  CHECK_THROWS_AS(staging_area::read_owner(a.path()), not_found);
  plant_owner(a.path(), "tok\n42\nhost\nnot-a-time\n");
  CHECK_THROWS_AS(staging_area::read_owner(a.path()), not_found);
  plant_owner(a.path(), "tok\n42\n"); // cut short: no host, no heartbeat
  CHECK_THROWS_AS(staging_area::read_owner(a.path()), not_found);
  CHECK_THROWS_AS(staging_area::read_owner(root.path / "no-such-folder"), not_found);
  // remove() cannot prove the folder is its own any more, so it leaves it (reclaim_stale's job).
  const auto p = a.path();
  CHECK_FALSE(a.remove());
  CHECK(fs::exists(p / ".casecore-owner"));
  CHECK(std::distance(fs::directory_iterator(root.path), fs::directory_iterator()) == 1);
}

TEST_CASE("a removed area refuses heartbeat and a second remove; a moved-from area owns nothing") {
  temp_root root;
  auto a = staging_area::create(root.path, "imp");
  const auto p = a.path();
  auto b = std::move(a);
  CHECK(a.path().empty());
  CHECK_FALSE(a.remove()); // the moved-from object must not delete b's folder
  CHECK(fs::exists(p));
  CHECK(b.path() == p);
  CHECK(b.remove());
  CHECK_FALSE(fs::exists(p));
  CHECK_FALSE(b.remove());
  CHECK_THROWS_AS(b.heartbeat(), invalid_argument);
  CHECK_FALSE(fs::exists(p)); // heartbeat did not recreate the folder
}

TEST_CASE("reclaim_stale refuses a negative or overflowing age and removes nothing") {
  temp_root root;
  auto a = staging_area::create(root.path, "imp");
  a.keep();
  plant_owner(a.path(), a.token() + "\n1\nelsewhere\n0\n"); // as stale as it gets
  CHECK_THROWS_AS(staging_area::reclaim_stale(root.path, std::chrono::milliseconds(-1)), invalid_argument);
  CHECK_THROWS_AS(staging_area::reclaim_stale(root.path, std::chrono::hours(24 * 3650 + 1)), invalid_argument);
  CHECK(fs::exists(a.path()));
  CHECK(staging_area::reclaim_stale(root.path, std::chrono::hours(24 * 3650)).size() == 1); // the bound itself is allowed
}

TEST_CASE("reclaim_stale judges another host's folder by its heartbeat only, and skips files and links") {
  temp_root root;
  fs::create_directories(root.path);
  // Another host: its pid means nothing here, so only the heartbeat's age counts.
  const fs::path fresh = root.path / "remote-fresh.x", old = root.path / "remote-old.x";
  fs::create_directory(fresh);
  fs::create_directory(old);
  plant_owner(fresh, "t1\n999999999\nsome-other-host\n" + std::to_string(now_us()) + "\n");
  plant_owner(old, "t2\n999999999\nsome-other-host\n" + std::to_string(now_us() - 2LL * 3600 * 1000000) + "\n");
  // Not import folders: a plain file and a link to a (stale-looking) folder outside the root.
  std::ofstream(root.path / "stray-file") << "x";
  temp_root outside;
  fs::create_directories(outside.path / "victim");
  plant_owner(outside.path / "victim", "t3\n1\nsome-other-host\n0\n");
  fs::create_directory_symlink(outside.path / "victim", root.path / "link.x");

  const auto got = staging_area::reclaim_stale(root.path, std::chrono::hours(1));
  REQUIRE(got.size() == 1);
  CHECK(got.front() == old);
  CHECK(fs::exists(fresh));
  CHECK_FALSE(fs::exists(old));
  CHECK(fs::exists(root.path / "stray-file"));
  CHECK(fs::is_symlink(root.path / "link.x"));
  CHECK(fs::exists(outside.path / "victim" / ".casecore-owner")); // never followed
}

TEST_CASE("reclaim_stale judges a folder without owner file by its age: a create() in progress is kept") {
  temp_root root;
  fs::create_directories(root.path / "young.x");
  fs::create_directories(root.path / "crashed.x");
  fs::last_write_time(root.path / "crashed.x", fs::file_time_type::clock::now() - std::chrono::hours(3));
  const auto got = staging_area::reclaim_stale(root.path, std::chrono::hours(1));
  REQUIRE(got.size() == 1);
  CHECK(got.front() == root.path / "crashed.x");
  CHECK(fs::exists(root.path / "young.x"));
  CHECK(staging_area::reclaim_stale(root.path / "no-such-root", std::chrono::hours(1)).empty());
}

TEST_CASE("create reports a root that cannot be made as backend_error and leaves nothing behind") {
  temp_root root;
  fs::create_directories(root.path);
  std::ofstream(root.path / "a-file") << "x";
  CHECK(code_of([&] { staging_area::create(root.path / "a-file" / "sub", "imp"); }) == errc::backend_error);
  CHECK(code_of([&] { staging_area::create(root.path / "a-file", "imp"); }) == errc::backend_error);
  CHECK(std::distance(fs::directory_iterator(root.path), fs::directory_iterator()) == 1);
}
