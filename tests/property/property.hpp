// Property-based tests (RapidCheck) driven from doctest: check_property runs a property for an
// explicit number of generated cases and reports how many passed, so a test case states its count:
//
//   const auto r = casecore::proof::check_property("parse_url never crashes", 10000, [](const std::string& s) { ... });
//   CHECK(r.passed);
//   CHECK(r.cases == 10000);
//
// The seed comes from RC_PARAMS (e.g. RC_PARAMS="seed=42"); RapidCheck prints the counterexample
// (shrunk) and a reproduce string when a property fails. RC_PARAMS's max_success is ignored: the
// count is the test's own (case_count(): 10,000 by default).
#pragma once

#include <rapidcheck.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>

namespace casecore::proof {

/// How many cases a property runs: `base` (10,000 unless stated), ten times that with
/// CASECORE_TEST_LONG=1, or exactly CASECORE_PROPERTY_CASES when set.
inline int case_count(int base = 10000) {
  if (const char* v = std::getenv("CASECORE_PROPERTY_CASES"); v && std::atoi(v) > 0) return std::atoi(v);
  if (const char* v = std::getenv("CASECORE_TEST_LONG"); v && std::string(v) == "1") return base * 10;
  return base;
}

/// What one property run did.
struct property_result {
  bool passed = false; ///< every generated case held
  int cases = 0;       ///< cases that ran and held
};

/// Run `prop` for `cases` generated cases (RapidCheck, shrinking on failure).
template <class Testable> property_result check_property(const std::string& description, int cases, Testable&& prop) {
  using namespace rc::detail;
  TestParams params = configuration().testParams;
  params.maxSuccess = cases;
  TestMetadata metadata;
  metadata.id = description;
  metadata.description = description;
  std::cerr << "- " << description << " (" << cases << " cases)\n";
  const auto result = checkTestable(std::forward<Testable>(prop), metadata, params);
  printResultMessage(result, std::cerr);
  std::cerr << "\n";
  property_result out;
  if (result.template is<SuccessResult>()) {
    out.passed = true;
    out.cases = result.template get<SuccessResult>().numSuccess;
  } else if (result.template is<FailureResult>()) {
    out.cases = result.template get<FailureResult>().numSuccess;
  } else if (result.template is<GaveUpResult>()) {
    out.cases = result.template get<GaveUpResult>().numSuccess;
  }
  return out;
}

/// Any byte, with control characters, DEL and high bytes as likely as printable ASCII.
inline rc::Gen<char> any_byte() {
  return rc::gen::oneOf(rc::gen::inRange<char>(0x00, 0x20), rc::gen::inRange<char>(0x20, 0x7f), rc::gen::just<char>(0x7f),
                        rc::gen::map(rc::gen::inRange<int>(0x80, 0x100), [](int c) { return static_cast<char>(c); }));
}

/// Strings of any bytes, of the given generator's length distribution.
inline rc::Gen<std::string> any_string() { return rc::gen::container<std::string>(any_byte()); }

/// Strings drawn from `alphabet`, `min`..`max` characters long.
inline rc::Gen<std::string> string_of(std::string alphabet, std::size_t min, std::size_t max) {
  return rc::gen::mapcat(rc::gen::inRange<std::size_t>(min, max + 1), [alphabet](std::size_t n) {
    return rc::gen::container<std::string>(n, rc::gen::elementOf(alphabet));
  });
}

} // namespace casecore::proof
