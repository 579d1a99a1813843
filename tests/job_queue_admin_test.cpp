// Operator calls of job_queue_admin.hpp that the dashboard pages use: the filtered, keyset-paged
// job list. Both backends.
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <algorithm>

using namespace casecore;
using casecore::testing::scratch_database;

namespace {

std::vector<std::int64_t> ids(const std::vector<jobs::job>& js) {
  std::vector<std::int64_t> out;
  for (const auto& j : js) out.push_back(j.id);
  return out;
}

jobs::job_spec spec(std::string op, std::string subject) {
  jobs::job_spec j;
  j.operation = std::move(op);
  j.subject = std::move(subject);
  return j;
}

jobs::list_query query(std::string operation, std::optional<jobs::job_state> state = std::nullopt, std::int64_t before = 0,
                       std::size_t limit = 100) {
  jobs::list_query q;
  q.operation = std::move(operation);
  q.state = state;
  q.before_id = before;
  q.limit = limit;
  return q;
}

} // namespace

TEST_CASE("job list: operation filter, state filter and keyset pages, newest first") {
  scratch_database s;
  auto db = s.open_migrated();
  std::vector<std::int64_t> a, b;
  for (int i = 0; i < 5; ++i) {
    a.push_back(jobs::enqueue(db, spec("alpha", "s" + std::to_string(i))).id);
    b.push_back(jobs::enqueue(db, spec("beta", "s" + std::to_string(i))).id);
  }
  REQUIRE(jobs::cancel(db, a[1]));
  std::reverse(a.begin(), a.end());
  std::reverse(b.begin(), b.end());

  CHECK(ids(jobs::list(db, query("alpha"))) == a);
  CHECK(ids(jobs::list(db, query("beta"))) == b);
  CHECK(jobs::list(db, query("gamma")).empty());
  CHECK(ids(jobs::list(db, query("alpha", jobs::job_state::cancelled))) ==
        std::vector<std::int64_t>{a[3]});
  CHECK(jobs::list(db, query("beta", jobs::job_state::cancelled)).empty());

  // Pages of two: each starts below the last id of the previous page; together they are the list.
  std::vector<std::int64_t> paged;
  std::int64_t cursor = 0;
  for (int page = 0; page < 10; ++page) {
    const auto got = jobs::list(db, query("alpha", std::nullopt, cursor, 2));
    if (got.empty()) break;
    CHECK(got.size() <= 2);
    for (const auto& j : got) paged.push_back(j.id);
    cursor = got.back().id;
  }
  CHECK(paged == a);
  // Jobs enqueued after a page was read do not shift the next page.
  const auto first = jobs::list(db, query("alpha", std::nullopt, 0, 2));
  jobs::enqueue(db, spec("alpha", "late"));
  CHECK(ids(jobs::list(db, query("alpha", std::nullopt, first.back().id, 2))) ==
        std::vector<std::int64_t>{a[2], a[3]});
  // The old overload is the same query without operation or cursor.
  CHECK(jobs::list(db, std::nullopt, 100).size() == 11);
}

TEST_CASE("job list: bad limits, cursors and filters are refused") {
  scratch_database s;
  auto db = s.open_migrated();
  CHECK_THROWS_AS(jobs::list(db, query("", std::nullopt, 0, 0)), invalid_argument);
  CHECK_THROWS_AS(jobs::list(db, query("", std::nullopt, 0, 10001)), invalid_argument);
  CHECK_THROWS_AS(jobs::list(db, query("", std::nullopt, -1)), invalid_argument);
  CHECK_THROWS_AS(jobs::list(db, query(std::string(101, 'x'))), invalid_argument);
}
