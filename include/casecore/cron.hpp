// casecore/cron.hpp — cron expressions evaluated in an IANA time zone (the clock of schedules).
//
// Concept: a `cron` is five fields — minute hour day-of-month month day-of-week — read as Vixie
// cron reads them, plus a time zone ("Europe/Berlin", "UTC"). next_after(t) is the first tick
// strictly after the instant t (µs since the Unix epoch, UTC). schedule.hpp stores and runs them.
// Fields: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` `a-b/n` `a/n` (a to the field's end),
// month names JAN..DEC and day names SUN..SAT (any case); day-of-week 0 and 7 are Sunday. When both
// day-of-month and day-of-week are restricted (neither starts with `*`), a day matches if EITHER
// matches (Vixie cron's rule: "0 0 1 * MON" = the 1st of the month and every Monday). Aliases:
// @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly.
// Time zone and daylight saving time (rules from the OS tzdata, /usr/share/zoneinfo):
//   * a local time that does not exist (spring forward: 02:00-02:59 on the last Sunday of March in
//     Europe/Berlin) fires once at the instant the gap ends (03:00 CEST); several ticks inside one
//     gap collapse into that one instant (one tick, one job).
//   * a local time that occurs twice (fall back: 02:00-02:59 on the last Sunday of October in
//     Europe/Berlin) fires once, at its first occurrence (CEST). So "*/15 * * * *" has no ticks in
//     the repeated second pass of that hour; use an interval schedule, or zone UTC, for an even
//     spacing across the change.
// Failure modes: invalid_argument (nothing else) for malformed text, a value out of a field's range,
// a step of 0, an expression that can never fire ("0 0 30 2 *"), an unknown or malformed zone name.
// Thread-safety: a cron is an immutable value; every member is safe to call from any thread.
//
//   const casecore::cron c("30 2 * * *", "Europe/Berlin");
//   const auto next = c.next_after(now_us);   // 02:30 Berlin time, µs since the epoch (UTC)
#pragma once

/// @file
/// Cron expressions in an IANA time zone (grammar, DST rules and failure modes: the comment above).
/// <!-- snippet: body() -->
/// @code
/// const casecore::cron c("0 9 * * MON-FRI", "Europe/Berlin");  // 09:00 Berlin time on weekdays
/// const casecore::micros next = c.next_after(0);              // first tick after 1970-01-01
/// (void)next;
/// @endcode

#include <casecore/value.hpp>

#include <bitset>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// A parsed five-field cron expression bound to a time zone.
class cron {
public:
  /// Parse `expression` for `zone` (IANA name); invalid_argument on bad text or an unknown zone.
  explicit cron(std::string_view expression, std::string_view zone = "UTC");

  /// The first tick strictly after `after` (µs since the Unix epoch, UTC), DST rules above.
  micros next_after(micros after) const;
  /// The last `max_count` ticks in (after, until], oldest first (one pass over the range).
  std::vector<micros> between(micros after, micros until, std::size_t max_count) const;
  /// The expression as given (trimmed).
  const std::string& expression() const noexcept { return expression_; }
  /// The zone name as given.
  const std::string& zone() const noexcept { return zone_; }

private:
  template <class F> void walk(micros after, F&& on_tick) const;
  std::string expression_;
  std::string zone_;
  const void* tz_ = nullptr; // date::time_zone from the process-wide tzdb (lives until exit)
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool day_restricted_ = false;
  bool weekday_restricted_ = false;
};

/// invalid_argument unless `zone` names a time zone of the OS tzdata ("UTC", "Europe/Berlin").
void check_time_zone(std::string_view zone);

} // namespace casecore

CASECORE_API_END
