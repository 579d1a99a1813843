#include <casecore/value.hpp>

#include <charconv>
#include <cstdio>

namespace casecore::detail {

namespace {
std::string_view type_name(const value& v) {
  switch (v.index()) {
    case 0: return "NULL";
    case 1: return "integer";
    case 2: return "double";
    case 3: return "text";
    default: return "blob";
  }
}
} // namespace

void throw_bad_cast(std::string_view wanted, const value& got) {
  raise(errc::backend_error, "cannot read a " + std::string(type_name(got)) + " column as " + std::string(wanted));
}

void throw_out_of_range(double got, int digits, bool is_signed) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", got);
  raise(errc::backend_error, std::string("a double column value ") + buf + " does not fit a " + (is_signed ? "signed " : "unsigned ") +
                                 std::to_string(digits + (is_signed ? 1 : 0)) + "-bit integer");
}

std::int64_t parse_int(std::string_view text) {
  std::int64_t out = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || p != text.data() + text.size()) {
    // PostgreSQL booleans arrive as text "t"/"f".
    if (text == "t") return 1;
    if (text == "f") return 0;
    raise(errc::backend_error, "not an integer: '" + std::string(text) + "'");
  }
  return out;
}

double parse_double(std::string_view text) {
  double out = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || p != text.data() + text.size()) raise(errc::backend_error, "not a number: '" + std::string(text) + "'");
  return out;
}

} // namespace casecore::detail
