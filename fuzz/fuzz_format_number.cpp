// Fuzz target: counter::format_number(pattern, scope, n, name).
// Invariants: a string or invalid_argument; the output is never longer than the pattern plus the
// substituted parts (no blow-up); "{n}" and "{n:01}" print exactly std::to_string(n), INT64_MIN
// included (regressions/format_number/int64-min-width: negating INT64_MIN was undefined behaviour).
#include "fuzz_support.hpp"

#include <casecore/counter.hpp>

#include <algorithm>

using namespace casecore;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::fields f(data, size);
  const auto pattern = f.next();
  const auto scope = f.next();
  const auto name = f.next();
  const auto n = f.next_int();
  try {
    const auto out = counter::format_number(pattern, scope, n, name);
    const std::size_t placeholders = static_cast<std::size_t>(std::count(pattern.begin(), pattern.end(), '{'));
    fuzz::require(out.size() <= pattern.size() + placeholders * (20 + scope.size() + name.size()), "output blow-up");
  } catch (const invalid_argument&) {
  }
  fuzz::require(counter::format_number("{n}", scope, n, name) == std::to_string(n), "{n} differs from to_string");
  // Zero padding never changes the number (INT64_MIN included: its magnitude does not fit int64).
  fuzz::require(counter::format_number("{n:01}", scope, n, name) == std::to_string(n), "{n:01} differs from to_string");
  return 0;
}
