// Validation of fences, shared by every port's public methods.
#include <casecore/error.hpp>
#include <casecore/ports/fence.hpp>

#include <algorithm>

namespace casecore {

void validate(const fence& f) {
  if (f.token < 0) raise(errc::invalid_argument, "fencing token must not be negative");
  if (f.token == 0) return; // unfenced: the scope is not used
  // Printable ASCII only: every store can use the scope as a key (a SQL text value, a file name hash).
  const bool ok = !f.scope.empty() && f.scope.size() <= 200 &&
                  std::all_of(f.scope.begin(), f.scope.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
  if (!ok) raise(errc::invalid_argument, "fence scope must be 1..200 printable ASCII characters");
}

} // namespace casecore
