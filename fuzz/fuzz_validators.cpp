// Fuzz target: the name and identifier validators that stand between user text and the
// filesystem, SQL text and terminals: blob_store::valid_key, validate_file_name,
// counter::check_name / check_scope, detail::check_printable, detail::is_identifier, is_sha256_hex.
// Invariants: each returns or throws invalid_argument only; an accepted blob key cannot traverse
// (no '/', '\\', NUL, leading '.'); an accepted identifier is plain ASCII [A-Za-z0-9_]; an accepted
// printable string is valid UTF-8 without controls and prints unchanged except for backslashes.
#include "fuzz_support.hpp"

#include <casecore/counter.hpp>
#include <casecore/detail/repository_identifier.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/ports/blob_store.hpp>

using namespace casecore;

namespace {
template <class F> bool accepted(F f) {
  try {
    f();
    return true;
  } catch (const invalid_argument&) {
    return false;
  }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  if (blob_store::valid_key(s)) {
    fuzz::require(!s.empty() && s.size() <= 200 && s.front() != '.', "blob key shape");
    fuzz::require(s.find_first_of(std::string_view("/\\\0 ", 4)) == std::string_view::npos, "blob key can traverse");
  }
  const bool printable = accepted([&] { detail::check_printable(s, "text", 1000); });
  fuzz::require(printable == (!s.empty() && s.size() <= 1000 && detail::is_printable(s)), "check_printable disagrees with is_printable");
  if (printable) {
    fuzz::require(detail::is_valid_utf8(s), "printable but not UTF-8");
    std::string without_backslash_escapes = detail::escape_for_terminal(s);
    std::string expected;
    for (char c : s) expected += c == '\\' ? std::string("\\\\") : std::string(1, c);
    fuzz::require(without_backslash_escapes == expected, "printable text was altered by escaping");
  }
  if (accepted([&] { validate_file_name(s); }))
    fuzz::require(!s.empty() && s.size() <= 255 && detail::is_printable(s), "file name accepted with controls");
  if (accepted([&] { counter::check_name(s); })) {
    fuzz::require(!s.empty() && s.size() <= 128, "counter name length");
    for (char c : s) fuzz::require(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, "counter name with a C0 control");
  }
  if (accepted([&] { counter::check_scope(s); }))
    for (char c : s) fuzz::require(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, "counter scope with a C0 control");
  if (detail::is_identifier(s))
    for (char c : s)
      fuzz::require((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_', "identifier not plain");
  fuzz::require(accepted([&] { detail::check_identifier(s, "identifier"); }) == detail::is_identifier(s), "check_identifier disagrees");
  if (is_sha256_hex(s)) fuzz::require(s.size() == 64 && blob_store::valid_key(s), "hash not a valid key");
  return 0;
}
