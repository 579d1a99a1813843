// The isolation spec proves properties of the job queue's statements only while it runs the very
// statements casecore runs: tests/isolation/specs/jobs_claim_heartbeat_reclaim.spec must contain
// each of them verbatim (casecore/detail/job_sql.hpp). Runs once, no database.
#include <casecore/detail/job_sql.hpp>
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace {

// The source tree's tests/ folder: from __FILE__ (absolute, or relative to the build folder the
// compiler ran in, which is where this binary lives when ccache rewrote it).
std::filesystem::path tests_folder() {
  const std::filesystem::path here(__FILE__);
  if (here.is_absolute()) return here.parent_path();
  char exe[4096] = {};
  const auto n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  const auto dir = n > 0 ? std::filesystem::path(std::string(exe, static_cast<std::size_t>(n))).parent_path() : std::filesystem::current_path();
  return (dir / here).lexically_normal().parent_path();
}

} // namespace

TEST_CASE("the isolation spec runs the job queue's statements verbatim") {
  const auto path = tests_folder() / "isolation" / "specs" / "jobs_claim_heartbeat_reclaim.spec";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::stringstream buf;
  buf << in.rdbuf();
  const auto spec = buf.str();
  namespace q = casecore::detail::job_sql;
  const auto pg = casecore::dialect::postgresql;
  for (const auto& text : {q::claim(pg, 1), q::claim(pg, 10), q::promote(pg, 10), q::heartbeat(pg), q::heartbeat_busy(pg),
                           q::reclaim(pg), q::complete_pg(), q::replace_payload(), q::check(pg)}) {
    CAPTURE(text);
    CHECK(spec.find(text) != std::string::npos);
  }
}
