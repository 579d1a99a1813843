// Properties of the validators that guard SQL text and keys: detail::is_identifier /
// check_identifier (the only text casecore puts into SQL) and counter::check_name / check_scope
// (also the validators of ordered-list names and keys and of link kinds), each against an
// independent reference model of its documented rule.
#include "property.hpp"

#include <casecore/counter.hpp>
#include <casecore/detail/repository_identifier.hpp>

#include <doctest/doctest.h>

#include <regex>

using casecore::proof::any_string;
using casecore::proof::check_property;
using casecore::proof::string_of;

namespace {

const int cases = casecore::proof::case_count();

const std::string ident_alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";

// The documented rule, as a regular expression: [A-Za-z_][A-Za-z0-9_]{0,62}.
bool identifier_model(const std::string& s) {
  static const std::regex rule("[A-Za-z_][A-Za-z0-9_]{0,62}");
  return std::regex_match(s, rule);
}

// Identifier-shaped text around the length limit, arbitrary bytes, and identifiers with one
// character swapped for an arbitrary byte (the near misses a validator gets wrong).
rc::Gen<std::string> identifier_candidates() {
  return rc::gen::oneOf(string_of(ident_alphabet, 0, 70), any_string(),
                        rc::gen::mapcat(string_of(ident_alphabet, 1, 64), [](std::string s) {
                          return rc::gen::map(rc::gen::pair(rc::gen::inRange<std::size_t>(0, s.size()), casecore::proof::any_byte()),
                                              [s](const std::pair<std::size_t, char>& p) {
                                                auto t = s;
                                                t[p.first] = p.second;
                                                return t;
                                              });
                        }));
}

// counter::check_name / check_scope: 1..128 (scope 0..128) bytes, no byte < 0x20, no 0x7f.
bool key_model(const std::string& s, bool allow_empty) {
  if ((!allow_empty && s.empty()) || s.size() > 128) return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

rc::Gen<std::string> key_candidates() {
  return rc::gen::oneOf(any_string(), string_of("abcXYZ 019-_:./{}", 0, 140),
                        rc::gen::map(rc::gen::inRange<std::size_t>(120, 140), [](std::size_t n) { return std::string(n, 'k'); }));
}

template <class F> bool throws_invalid_argument(F&& f) {
  try {
    f();
    return false;
  } catch (const casecore::error& e) {
    RC_ASSERT(e.code() == casecore::errc::invalid_argument);
    return true;
  }
}

} // namespace

TEST_CASE("property: is_identifier and check_identifier follow [A-Za-z_][A-Za-z0-9_]{0,62}") {
  const auto r = check_property("identifier validation matches its rule", cases, [] {
    const auto s = *identifier_candidates();
    const bool ok = identifier_model(s);
    RC_ASSERT(casecore::detail::is_identifier(s) == ok);
    std::string message;
    const bool refused = throws_invalid_argument([&] {
      try {
        casecore::detail::check_identifier(s, "table");
      } catch (const casecore::error& e) {
        message = e.what();
        throw;
      }
    });
    RC_ASSERT(refused == !ok);
    // The message quotes at most 80 bytes of the offending text.
    if (refused) RC_ASSERT(message.size() <= 80 + 120);
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: counter names and scopes are 1..128 / 0..128 bytes without control characters") {
  const auto r = check_property("counter::check_name / check_scope match their rule", cases, [] {
    const auto s = *key_candidates();
    RC_ASSERT(throws_invalid_argument([&] { casecore::counter::check_name(s); }) == !key_model(s, false));
    RC_ASSERT(throws_invalid_argument([&] { casecore::counter::check_scope(s); }) == !key_model(s, true));
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
