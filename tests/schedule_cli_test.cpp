// `casecore schedule list` against a scratch database of the selected backend: columns, escaping of a
// hostile schedule name, and --json that carries every field.
#ifdef CASECORE_CLI_PATH

#include <casecore/schedule.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <ctime>
#include <string>

using namespace casecore;
using namespace std::chrono_literals;
using casecore::testing::scratch_database;

namespace {

// Runs the CLI with `args`; its stdout and exit status.
std::pair<int, std::string> run_cli(const std::vector<std::string>& args) {
  auto r = casecore::testing::run_program(CASECORE_CLI_PATH, args);
  return {r.exit_code, std::move(r.out)};
}

micros utc(int y, int mo, int d, int h, int mi) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  return static_cast<micros>(timegm(&t)) * 1000000;
}

} // namespace

TEST_CASE("cli: schedule list shows spec, zone, next and last run; escapes names; --json") {
  scratch_database s;
  auto db = s.open_migrated();
  schedules::schedule nightly;
  nightly.name = "nightly";
  nightly.cron = "30 2 * * *";
  nightly.zone = "Europe/Berlin";
  nightly.job.operation = "report";
  const auto t0 = utc(2026, 1, 1, 0, 0);
  schedules::upsert(db, nightly, t0);
  schedules::schedule pulse;
  pulse.name = "pulse";
  pulse.every = 90s;
  pulse.job.operation = "beat";
  schedules::upsert(db, pulse, t0);
  const auto ticks = schedules::run_due(db, utc(2026, 1, 1, 1, 31));
  REQUIRE(ticks.size() == 2);
  const auto nightly_job = ticks[0].schedule == "nightly" ? ticks[0].job_id : ticks[1].job_id;
  // The API refuses control characters in names; a row written some other way is still escaped.
  db.write([](transaction& tx) { tx.exec("UPDATE casecore_schedules SET name = $1 WHERE name = 'nightly'", "nightly\x1b[31mred"); });

  auto [code, out] = run_cli({"--db", s.url(), "schedule", "list"});
  CHECK(code == 0);
  CHECK(out.find("name\tspec\tzone\tcatch_up\toperation\tnext_run\tlast_run\tlast_job\n") == 0);
  INFO(out);
  CHECK(out.find('\x1b') == std::string::npos); // the ESC never reaches the terminal
  CHECK(out.find("nightly\\e[31mred\t30 2 * * *\tEurope/Berlin\tlatest\treport\t2026-01-02T01:30:00.000000Z\t"
                 "2026-01-01T01:30:00.000000Z\t") != std::string::npos);
  CHECK(out.find("pulse\tevery 90s\tUTC\tlatest\tbeat\t") != std::string::npos);

  std::tie(code, out) = run_cli({"--db", s.url(), "--json", "schedule", "list"});
  CHECK(code == 0);
  CHECK(out.find("\"name\":\"nightly\\u001b[31mred\"") != std::string::npos);
  CHECK(out.find("\"kind\":\"cron\",\"cron\":\"30 2 * * *\",\"zone\":\"Europe/Berlin\"") != std::string::npos);
  CHECK(out.find("\"next_run_us\":" + std::to_string(utc(2026, 1, 2, 1, 30))) != std::string::npos);
  CHECK(out.find("\"last_job_id\":" + std::to_string(nightly_job)) != std::string::npos);
  CHECK(out.find("\"kind\":\"interval\",\"cron\":\"\",\"zone\":\"UTC\",\"every_ms\":90000") != std::string::npos);
}

#endif
