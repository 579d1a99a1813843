// Cron expressions (casecore/cron.hpp): the grammar, Vixie cron's day rule, aliases, time zones and
// both daylight-saving transitions of Europe/Berlin, and every kind of bad input. No database.
#include <casecore/cron.hpp>
#include <casecore/error.hpp>
#include <doctest/doctest.h>

#include <ctime>
#include <string>
#include <vector>

using casecore::cron;
using casecore::micros;

namespace {

// µs since the epoch of a UTC calendar time.
micros utc(int y, int mo, int d, int h = 0, int mi = 0) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  return static_cast<micros>(timegm(&t)) * 1000000;
}

std::string bad_message(const std::string& expression, const std::string& zone = "UTC") {
  try {
    cron c(expression, zone);
  } catch (const casecore::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

} // namespace

TEST_CASE("cron: steps, ranges, lists and names") {
  CHECK(cron("*/15 * * * *").next_after(utc(2026, 1, 1, 0, 7)) == utc(2026, 1, 1, 0, 15));
  CHECK(cron("*/15 * * * *").next_after(utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)); // strictly after
  CHECK(cron("0 9 * * MON-FRI").next_after(utc(2026, 1, 3, 10)) == utc(2026, 1, 5, 9));    // Sat → Mon
  CHECK(cron("0 0 1 JAN,jul *").next_after(utc(2026, 2, 1)) == utc(2026, 7, 1));
  CHECK(cron("0 0 * * 7").next_after(utc(2026, 1, 1)) == utc(2026, 1, 4)); // 7 is Sunday
  CHECK(cron("0 0 * * 0").next_after(utc(2026, 1, 1)) == utc(2026, 1, 4));
  const cron from5("5/20 * * * *");
  CHECK(from5.between(utc(2026, 1, 1), utc(2026, 1, 1, 1), 10) ==
        std::vector<micros>{utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 25), utc(2026, 1, 1, 0, 45)});
  const cron ranged("10-30/10 8,12 * * *");
  CHECK(ranged.between(utc(2026, 1, 1), utc(2026, 1, 2), 10) ==
        std::vector<micros>{utc(2026, 1, 1, 8, 10), utc(2026, 1, 1, 8, 20), utc(2026, 1, 1, 8, 30),
                            utc(2026, 1, 1, 12, 10), utc(2026, 1, 1, 12, 20), utc(2026, 1, 1, 12, 30)});
  CHECK(cron("  0 12 * * *  ").expression() == "0 12 * * *");
}

TEST_CASE("cron: day-of-month and day-of-week both restricted match either (Vixie cron)") {
  const cron c("0 0 13 * FRI");
  // 2026-01-02 is a Friday, the 9th too, the 13th a Tuesday.
  CHECK(c.next_after(utc(2026, 1, 1)) == utc(2026, 1, 2));
  CHECK(c.next_after(utc(2026, 1, 9)) == utc(2026, 1, 13));
  // Only one restricted: both must hold (a star day-of-week keeps the 13th only).
  CHECK(cron("0 0 13 * *").next_after(utc(2026, 1, 1)) == utc(2026, 1, 13));
  // A field that starts with '*' ("*/10") is not restricted for this rule (as in Vixie cron): the
  // 1st/11th/21st/31st AND a Monday.
  CHECK(cron("0 0 */10 * MON").next_after(utc(2026, 1, 1)) == utc(2026, 5, 11));
}

TEST_CASE("cron: aliases") {
  const auto t = utc(2026, 5, 17, 10, 30); // a Sunday
  CHECK(cron("@hourly").next_after(t) == utc(2026, 5, 17, 11));
  CHECK(cron("@daily").next_after(t) == utc(2026, 5, 18));
  CHECK(cron("@midnight").next_after(t) == utc(2026, 5, 18));
  CHECK(cron("@weekly").next_after(t) == utc(2026, 5, 24));
  CHECK(cron("@monthly").next_after(t) == utc(2026, 6, 1));
  CHECK(cron("@yearly").next_after(t) == utc(2027, 1, 1));
  CHECK(cron("@annually").next_after(t) == utc(2027, 1, 1));
  CHECK(cron("0 0 29 2 *").next_after(t) == utc(2028, 2, 29)); // leap day: the next leap year
}

TEST_CASE("cron: a zone's offset, winter and summer") {
  const cron noon("0 12 * * *", "America/New_York");
  CHECK(noon.next_after(utc(2026, 1, 10)) == utc(2026, 1, 10, 17)); // EST, UTC-5
  CHECK(noon.next_after(utc(2026, 7, 10)) == utc(2026, 7, 10, 16)); // EDT, UTC-4
  CHECK(noon.zone() == "America/New_York");
}

TEST_CASE("cron: Europe/Berlin spring forward — a tick in the skipped hour fires once, when the gap ends") {
  // 2026-03-29: 02:00 CET (01:00 UTC) jumps to 03:00 CEST; 02:30 local does not exist.
  const cron c("30 2 * * *", "Europe/Berlin");
  CHECK(c.next_after(utc(2026, 3, 28, 2)) == utc(2026, 3, 29, 1));          // gap end = 03:00 CEST
  CHECK(c.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 30, 0, 30));       // 02:30 CEST the next day
  CHECK(c.next_after(utc(2026, 3, 27, 2)) == utc(2026, 3, 28, 1, 30));       // 02:30 CET the day before
  // Every 15 minutes: 02:00..02:45 and 03:00 all land on 01:00 UTC, one tick; spacing stays 15 min.
  const cron q("*/15 * * * *", "Europe/Berlin");
  CHECK(q.between(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), 100) ==
        std::vector<micros>{utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 15), utc(2026, 3, 29, 1, 30)});
}

TEST_CASE("cron: Europe/Berlin fall back — a repeated local time fires once, at its first occurrence") {
  // 2026-10-25: 03:00 CEST (01:00 UTC) goes back to 02:00 CET; 02:30 local happens at 00:30 and 01:30 UTC.
  const cron c("30 2 * * *", "Europe/Berlin");
  CHECK(c.next_after(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30));
  CHECK(c.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)); // not 01:30 UTC the same day
  // Hourly: 02:00 CEST (00:00 UTC), then 03:00 CET (02:00 UTC); the second 02:00 (CET) has no tick.
  const cron h("0 * * * *", "Europe/Berlin");
  CHECK(h.between(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30), 100) ==
        std::vector<micros>{utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)});
}

TEST_CASE("cron: between keeps the newest ticks, oldest first") {
  const cron every("* * * * *");
  CHECK(every.between(utc(2026, 1, 1), utc(2026, 1, 1, 0, 10), 3) ==
        std::vector<micros>{utc(2026, 1, 1, 0, 8), utc(2026, 1, 1, 0, 9), utc(2026, 1, 1, 0, 10)});
  CHECK(every.between(utc(2026, 1, 1), utc(2026, 1, 1), 3).empty());
  CHECK(every.between(utc(2026, 1, 1, 0, 10), utc(2026, 1, 1), 3).empty());
  // A whole year of minutes in one pass (catch-up after a long outage).
  const auto year = every.between(utc(2025, 1, 1), utc(2026, 1, 1), 1000);
  REQUIRE(year.size() == 1000);
  CHECK(year.back() == utc(2026, 1, 1));
  CHECK(year.front() == utc(2026, 1, 1) - micros{999} * 60 * 1000000);
}

TEST_CASE("cron: bad text and unknown zones are invalid_argument with a clear message") {
  CHECK(bad_message("* * * *").find("expected 5 fields") != std::string::npos);
  CHECK(bad_message("* * * * * *").find("found 6") != std::string::npos);
  CHECK(bad_message("").find("cron expression") != std::string::npos);
  CHECK(bad_message("60 * * * *").find("minute value 60 is out of range 0-59") != std::string::npos);
  CHECK(bad_message("* 24 * * *").find("hour value 24") != std::string::npos);
  CHECK(bad_message("* * 0 * *").find("day-of-month value 0") != std::string::npos);
  CHECK(bad_message("* * * 13 *").find("month value 13") != std::string::npos);
  CHECK(bad_message("* * * * 8").find("day-of-week value 8") != std::string::npos);
  CHECK(bad_message("*/0 * * * *").find("step must be") != std::string::npos);
  CHECK(bad_message("*/x * * * *").find("is not a number") != std::string::npos);
  CHECK(bad_message("*/61 * * * *").find("step must be") != std::string::npos);
  CHECK(bad_message("1-5/ * * * *").find("cron expression") != std::string::npos);
  CHECK(bad_message("5x * * * *").find("cron expression") != std::string::npos);
  CHECK(bad_message("@sometimes").find("cron expression") != std::string::npos);
  CHECK(bad_message("   ").find("cron expression") != std::string::npos);
  CHECK(bad_message("30-10 * * * *").find("runs backwards") != std::string::npos);
  CHECK(bad_message("1,,2 * * * *").find("empty list item") != std::string::npos);
  CHECK(bad_message("* * * FOO *").find("unknown month name 'FOO'") != std::string::npos);
  CHECK(bad_message("* * * * FUNDAY").find("unknown day-of-week name") != std::string::npos);
  CHECK(bad_message("MON * * * *").find("is not a number") != std::string::npos); // names only where they mean something
  CHECK(bad_message("-5 * * * *").find("empty value") != std::string::npos);
  CHECK(bad_message("@fortnightly").find("unknown alias") != std::string::npos);
  CHECK(bad_message("0 0 30 2 *").find("never fire") != std::string::npos);
  CHECK(bad_message("0 0 31 4,6,9,11 *").find("never fire") != std::string::npos);
  CHECK(bad_message("0 0 31 4 MON") == "(accepted)"); // day-of-week rescues it (Vixie OR rule)
  CHECK(bad_message("0 0 * * *\x1b[2J").find("cron expression") != std::string::npos);
  CHECK(bad_message("0 0 * * *", "Mars/Olympus_Mons").find("unknown time zone 'Mars/Olympus_Mons'") != std::string::npos);
  CHECK(bad_message("0 0 * * *", "").find("time zone") != std::string::npos);
  CHECK(bad_message("0 0 * * *", "../../etc/passwd").find("unknown time zone") != std::string::npos);
  CHECK_THROWS_AS(casecore::check_time_zone("Europe/Atlantis"), casecore::invalid_argument);
  CHECK_NOTHROW(casecore::check_time_zone("Europe/Berlin"));
}

TEST_CASE("cron: surrounding blanks are trimmed; between() of an empty range or count is empty") {
  const cron c("  0 12 * * *  ");
  CHECK(c.expression() == "0 12 * * *");
  CHECK(c.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 12, 0));
  CHECK(c.between(utc(2026, 1, 2), utc(2026, 1, 1), 10).empty()); // until before after
  CHECK(c.between(utc(2026, 1, 1), utc(2026, 1, 5), 0).empty());  // no room
  CHECK(c.between(utc(2026, 1, 1), utc(2026, 1, 5), 10).size() == 4);
}
