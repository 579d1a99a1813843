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
