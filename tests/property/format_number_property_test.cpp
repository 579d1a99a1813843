// Properties of counter::format_number against an independent reference model of its documented
// pattern language: "{n}", "{n:0W}" (zero-padded to width W, 1..20), "{scope}", "{name}", and the
// escapes "{{" / "}}"; anything else in braces, a lone "}" or an unterminated "{" is refused with
// invalid_argument. Numbers cover the whole int64 range, its ends included.
#include "property.hpp"

#include <casecore/counter.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

using casecore::proof::check_property;
using casecore::proof::string_of;

namespace {

const int cases = casecore::proof::case_count();

// The model: decimal digits of |n| computed without overflow, then the sign.
std::string model_number(std::int64_t n, int width) {
  const bool negative = n < 0;
  std::uint64_t magnitude = negative ? std::uint64_t{0} - static_cast<std::uint64_t>(n) : static_cast<std::uint64_t>(n);
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + magnitude % 10));
    magnitude /= 10;
  } while (magnitude > 0);
  if (static_cast<int>(digits.size()) < width) digits.insert(0, static_cast<std::size_t>(width) - digits.size(), '0');
  return (negative ? "-" : "") + digits;
}

// What the model makes of one token of the grammar (nullopt: the pattern is refused).
std::optional<std::string> render(const std::string& t, std::int64_t n, const std::string& scope, const std::string& name) {
  if (t == "{{") return std::string("{");
  if (t == "}}") return std::string("}");
  if (t == "{n}") return model_number(n, 0);
  if (t == "{scope}") return scope;
  if (t == "{name}") return name;
  if (t.size() >= 2 && t.front() == '{' && t.back() == '}') {
    const auto ph = t.substr(1, t.size() - 2);
    // "n:0" followed by one or two digits giving a width of 1..20.
    if (ph.size() >= 4 && ph.size() <= 5 && ph.compare(0, 3, "n:0") == 0) {
      int width = 0;
      for (char d : ph.substr(3)) {
        if (d < '0' || d > '9') return std::nullopt;
        width = width * 10 + (d - '0');
      }
      if (width < 1 || width > 20) return std::nullopt;
      return model_number(n, width);
    }
    return std::nullopt;
  }
  if (t.find('{') != std::string::npos || t.find('}') != std::string::npos) return std::nullopt; // lone brace
  return t;
}

rc::Gen<std::string> token_gen() {
  return rc::gen::oneOf(
      string_of("WO-_/ abcXYZ0189.#", 1, 6),                                       // literal text
      rc::gen::element<std::string>("{{", "}}", "{n}", "{scope}", "{name}"),        // well-formed
      rc::gen::map(rc::gen::inRange(0, 25), [](int w) { return "{n:0" + std::to_string(w) + "}"; }),
      rc::gen::map(rc::gen::inRange(0, 25), [](int w) { return "{n:" + std::to_string(w) + "}"; }),
      rc::gen::element<std::string>("{", "}", "{x}", "{}", "{n:0a}", "{n:0}", "{N}", "{n:000}", "{ n}", "{scope:03}"));
}

rc::Gen<std::int64_t> number_gen() {
  return rc::gen::oneOf(rc::gen::arbitrary<std::int64_t>(), rc::gen::inRange<std::int64_t>(-1000, 100000),
                        rc::gen::element(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(),
                                         std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min() + 1));
}

} // namespace

TEST_CASE("property: format_number matches the reference model (widths, padding, escapes, errors)") {
  const auto r = check_property("format_number vs model", cases, [] {
    const auto tokens = *rc::gen::container<std::vector<std::string>>(token_gen());
    const auto n = *number_gen();
    const auto scope = *string_of("2025ab-", 0, 6);
    const auto name = *string_of("invoice_", 0, 8);
    std::string pattern;
    for (const auto& t : tokens) pattern += t;
    // The tokens are only a way to generate interesting patterns; the model reads the concatenated
    // pattern as the grammar does ("{" followed by "{n}" reads as "{{" then "n}").
    std::optional<std::string> model = std::string();
    for (std::size_t i = 0; i < pattern.size() && model;) {
      std::string t;
      if (pattern.compare(i, 2, "{{") == 0 || pattern.compare(i, 2, "}}") == 0) {
        t = pattern.substr(i, 2);
      } else if (pattern[i] == '{') {
        const auto close = pattern.find('}', i);
        t = close == std::string::npos ? pattern.substr(i) : pattern.substr(i, close - i + 1);
        if (close == std::string::npos) t = "{"; // unterminated
      } else if (pattern[i] == '}') {
        t = "}";
      } else {
        t = pattern.substr(i, 1);
      }
      const auto piece = render(t, n, scope, name);
      if (!piece) model.reset();
      else *model += *piece;
      i += t.size();
    }
    if (tokens.empty()) RC_ASSERT(model == std::optional<std::string>(std::string()));
    try {
      const auto out = casecore::counter::format_number(pattern, scope, n, name);
      RC_ASSERT(model.has_value());
      RC_ASSERT(out == *model);
    } catch (const casecore::error& e) {
      RC_ASSERT(e.code() == casecore::errc::invalid_argument);
      RC_ASSERT(!model.has_value());
    }
    RC_TAG(model.has_value() ? "formatted" : "refused");
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: zero-padded numbers have exactly max(width, digits) digits and keep their value") {
  const auto r = check_property("{n:0W} width and value", cases, [] {
    const auto n = *number_gen();
    const auto width = *rc::gen::inRange(1, 21);
    const auto out = casecore::counter::format_number("{n:0" + std::to_string(width) + "}", "", n);
    const std::string digits = n < 0 ? out.substr(1) : out;
    RC_ASSERT((n < 0) == (!out.empty() && out[0] == '-'));
    RC_ASSERT(digits.find_first_not_of("0123456789") == std::string::npos);
    RC_ASSERT(digits.size() == std::max<std::size_t>(static_cast<std::size_t>(width), model_number(n, 0).size() - (n < 0 ? 1 : 0)));
    RC_ASSERT(out == model_number(n, width));
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
