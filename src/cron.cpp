// Cron parsing and tick arithmetic (casecore/cron.hpp). Time zones come from Howard Hinnant's date
// library as Debian builds it: USE_OS_TZDB=1, so the rules are the OS tzdata in /usr/share/zoneinfo
// (package tzdata), never a download.
#include <casecore/cron.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/error.hpp>

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <vector>

namespace casecore {

namespace {

using namespace std::chrono;

struct field_def {
  std::string_view name;
  int min;
  int max;
  const std::array<std::string_view, 12>* names; // names[i] is the value min_name + i
  int min_name;
};

constexpr std::array<std::string_view, 12> month_names{"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 12> day_names{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "", "", "", "", ""};

[[noreturn]] void bad(std::string_view expression, const std::string& why) {
  raise(errc::invalid_argument, "cron expression '" + std::string(expression) + "': " + why);
}

int parse_value(std::string_view expression, const field_def& f, std::string_view token) {
  if (token.empty()) bad(expression, std::string(f.name) + " field has an empty value");
  if (f.names && std::isalpha(static_cast<unsigned char>(token[0]))) {
    std::string upper(token);
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (std::size_t i = 0; i < f.names->size(); ++i)
      if (!(*f.names)[i].empty() && (*f.names)[i] == upper) return f.min_name + static_cast<int>(i);
    bad(expression, "unknown " + std::string(f.name) + " name '" + std::string(token) + "'");
  }
  int v = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec != std::errc{} || end != token.data() + token.size())
    bad(expression, std::string(f.name) + " field: '" + std::string(token) + "' is not a number");
  if (v < f.min || v > f.max)
    bad(expression, std::string(f.name) + " value " + std::to_string(v) + " is out of range " + std::to_string(f.min) +
                        "-" + std::to_string(f.max));
  return v;
}

// One field ("*/15", "1-5", "MON,WED", "10/5") → the set of values; `restricted` unless it starts with '*'.
std::uint64_t parse_field(std::string_view expression, const field_def& f, std::string_view text, bool& restricted) {
  restricted = text.empty() || text[0] != '*';
  std::uint64_t mask = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) bad(expression, std::string(f.name) + " field has an empty list item");
    auto range = item;
    int step = 1;
    if (const auto slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const auto step_text = item.substr(slash + 1);
      const auto [end, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
      if (step_text.empty() || ec != std::errc{} || end != step_text.data() + step_text.size())
        bad(expression, std::string(f.name) + " field: step '" + std::string(step_text) + "' is not a number");
      if (step < 1 || step > f.max) bad(expression, std::string(f.name) + " step must be 1-" + std::to_string(f.max));
    }
    int lo = f.min;
    int hi = f.max;
    if (range == "*") {
      // the whole field
    } else if (const auto dash = range.find('-'); dash != std::string_view::npos) {
      lo = parse_value(expression, f, range.substr(0, dash));
      hi = parse_value(expression, f, range.substr(dash + 1));
      if (lo > hi) bad(expression, std::string(f.name) + " range " + std::string(range) + " runs backwards");
    } else {
      lo = parse_value(expression, f, range);
      // "a/n" means a to the end of the field by n; a bare "a" is that one value.
      hi = item.find('/') != std::string_view::npos ? f.max : lo;
    }
    for (int v = lo; v <= hi; v += step) mask |= std::uint64_t{1} << v;
  }
  return mask;
}

const date::time_zone* locate(std::string_view zone) {
  detail::check_printable(zone, "time zone", 100);
  try {
    return date::locate_zone(zone);
  } catch (const std::exception&) {
    raise(errc::invalid_argument, "unknown time zone '" + std::string(zone) +
                                      "' (an IANA name from the OS tzdata, e.g. UTC or Europe/Berlin)");
  }
}

std::string_view alias(std::string_view text) {
  if (text == "@yearly" || text == "@annually") return "0 0 1 1 *";
  if (text == "@monthly") return "0 0 1 * *";
  if (text == "@weekly") return "0 0 * * 0";
  if (text == "@daily" || text == "@midnight") return "0 0 * * *";
  if (text == "@hourly") return "0 * * * *";
  return {};
}

} // namespace

void check_time_zone(std::string_view zone) { (void)locate(zone); }

cron::cron(std::string_view expression, std::string_view zone) {
  detail::check_printable(expression, "cron expression", 200);
  while (!expression.empty() && std::isspace(static_cast<unsigned char>(expression.front()))) expression.remove_prefix(1);
  while (!expression.empty() && std::isspace(static_cast<unsigned char>(expression.back()))) expression.remove_suffix(1);
  expression_ = expression;
  auto text = expression;
  if (!text.empty() && text[0] == '@') {
    text = alias(text);
    if (text.empty()) bad(expression, "unknown alias (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)");
  }
  std::vector<std::string_view> fields;
  for (std::size_t i = 0; i < text.size();) {
    if (std::isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    auto j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    fields.push_back(text.substr(i, j - i));
    i = j;
  }
  if (fields.size() != 5)
    bad(expression, "expected 5 fields (minute hour day-of-month month day-of-week), found " + std::to_string(fields.size()));
  bool restricted = false;
  minutes_ = std::bitset<60>(parse_field(expression, {"minute", 0, 59, nullptr, 0}, fields[0], restricted));
  hours_ = std::bitset<24>(parse_field(expression, {"hour", 0, 23, nullptr, 0}, fields[1], restricted));
  days_ = std::bitset<32>(parse_field(expression, {"day-of-month", 1, 31, nullptr, 0}, fields[2], day_restricted_));
  months_ = std::bitset<13>(parse_field(expression, {"month", 1, 12, &month_names, 1}, fields[3], restricted));
  auto weekdays = parse_field(expression, {"day-of-week", 0, 7, &day_names, 0}, fields[4], weekday_restricted_);
  if (weekdays & (std::uint64_t{1} << 7)) weekdays = (weekdays | 1) & 0x7f; // 7 is Sunday too
  weekdays_ = std::bitset<7>(weekdays);
  // Refuse what can never fire ("0 0 30 2 *"): some chosen day must exist in some chosen month.
  if (day_restricted_ && !weekday_restricted_) {
    constexpr std::array<int, 13> longest{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool possible = false;
    for (int m = 1; m <= 12; ++m)
      for (int d = 1; d <= longest[static_cast<std::size_t>(m)]; ++d)
        possible = possible || (months_[static_cast<std::size_t>(m)] && days_[static_cast<std::size_t>(d)]);
    if (!possible) bad(expression, "no chosen day-of-month exists in any chosen month: it would never fire");
  }
  zone_ = zone;
  tz_ = locate(zone);
}

// Calls on_tick(t) for every tick after `after`, ascending and without repeats, until it returns
// false. Local candidate times map to instants monotonically (DST rules in the header), so one pass
// in local time yields the ticks in order; a gap's collapsed ticks arrive as repeats and are dropped.
template <class F> void cron::walk(micros after, F&& on_tick) const {
  const auto* tz = static_cast<const date::time_zone*>(tz_);
  const sys_seconds after_s = floor<seconds>(sys_time<microseconds>(microseconds(after)));
  const auto local_after = tz->to_local(after_s);
  // A zone's offset is less than a day, so a local time a day before `after` is certainly not later.
  const auto earliest = local_after - date::days(1);
  auto day = date::floor<date::days>(local_after) - date::days(1);
  micros last = after;
  // Feb 29 on a Monday recurs within 28 years; nothing that passed the constructor waits longer.
  const auto end = day + date::days(366 * 29);
  for (; day < end; day += date::days(1)) {
    const date::year_month_day ymd(day);
    if (!months_[static_cast<unsigned>(ymd.month())]) continue;
    const bool dom = days_[static_cast<unsigned>(ymd.day())];
    const bool dow = weekdays_[date::weekday(day).c_encoding()];
    if (!(day_restricted_ && weekday_restricted_ ? dom || dow : dom && dow)) continue;
    for (int h = 0; h < 24; ++h) {
      if (!hours_[static_cast<std::size_t>(h)]) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_[static_cast<std::size_t>(m)]) continue;
        const date::local_seconds lt = day + hours(h) + minutes(m);
        if (lt <= earliest) continue;
        const auto info = tz->get_info(lt);
        sys_seconds at;
        if (info.result == date::local_info::nonexistent)
          at = info.second.begin; // the gap's end: the first instant the clock shows a later time
        else
          at = sys_seconds{(lt - info.first.offset).time_since_epoch()}; // unique, or the first of two
        const micros us = duration_cast<microseconds>(at.time_since_epoch()).count();
        if (us <= last) continue;
        last = us;
        if (!on_tick(us)) return;
      }
    }
  }
  raise(errc::invalid_argument, "cron expression '" + expression_ + "' has no tick within 29 years");
}

micros cron::next_after(micros after) const {
  micros next = 0;
  walk(after, [&](micros t) {
    next = t;
    return false;
  });
  return next;
}

std::vector<micros> cron::between(micros after, micros until, std::size_t max_count) const {
  std::vector<micros> out;
  if (until <= after || max_count == 0) return out;
  std::size_t head = 0; // ring buffer of the newest max_count ticks
  walk(after, [&](micros t) {
    if (t > until) return false;
    if (out.size() < max_count) {
      out.push_back(t);
    } else {
      out[head] = t;
      head = (head + 1) % max_count;
    }
    return true;
  });
  std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(head), out.end());
  return out;
}

} // namespace casecore
