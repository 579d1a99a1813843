// Properties of state-machine declarations (casecore::state_machine): a declaration is accepted
// exactly when its column is a plain identifier and no edge names an empty state; an accepted
// machine allows exactly the declared (from, to) pairs — whatever their order or repetition — and
// its states are exactly the edges' endpoints.
// GCC 12 with -fsanitize=address,undefined reports std::regex's internal std::function as "maybe
// uninitialized" (a false positive inside libstdc++'s regex compiler), which -Werror turns into a
// failed asan build.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "property.hpp"

#include <casecore/error.hpp>
#include <casecore/state_machine.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <regex>
#include <set>
#include <vector>

using casecore::proof::any_string;
using casecore::proof::check_property;
using casecore::proof::string_of;

namespace {

const int cases = casecore::proof::case_count();
using edge = std::pair<std::string, std::string>;

const std::vector<std::string> names{"draft", "review", "approved", "rejected", "archived", "Draft", "draft ", ""};

bool identifier_model(const std::string& s) {
  static const std::regex rule("[A-Za-z_][A-Za-z0-9_]{0,62}");
  return std::regex_match(s, rule);
}

rc::Gen<edge> edge_gen() {
  return rc::gen::pair(rc::gen::elementOf(names), rc::gen::elementOf(names));
}

} // namespace

TEST_CASE("property: a state machine allows exactly its declared edges") {
  const auto r = check_property("state_machine declarations", cases, [] {
    const auto column = *rc::gen::oneOf(rc::gen::element<std::string>("status", "state", "_s2", "Status_Column"),
                                        string_of("abcXYZ_019 -", 0, 8), any_string());
    const auto edges = *rc::gen::container<std::vector<edge>>(edge_gen());
    const bool valid = identifier_model(column) &&
                       std::none_of(edges.begin(), edges.end(), [](const edge& e) { return e.first.empty() || e.second.empty(); });
    const std::set<edge> declared(edges.begin(), edges.end());
    try {
      const casecore::state_machine m(column, edges);
      RC_ASSERT(valid);
      RC_ASSERT(m.column() == column);
      std::set<std::string> states;
      for (const auto& e : declared) states.insert({e.first, e.second});
      RC_ASSERT(m.states() == states);
      for (const auto& from : names)
        for (const auto& to : names) RC_ASSERT(m.allows(from, to) == (declared.count({from, to}) == 1));
      RC_ASSERT(!m.allows("unknown", "draft"));
      // Order and repetition of the declaration do not matter.
      auto shuffled = edges;
      shuffled.insert(shuffled.end(), edges.begin(), edges.end());
      std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(*rc::gen::arbitrary<std::uint32_t>()));
      const casecore::state_machine again(column, shuffled);
      for (const auto& from : names)
        for (const auto& to : names) RC_ASSERT(again.allows(from, to) == m.allows(from, to));
      RC_TAG(declared.empty() ? "no edges" : "edges");
    } catch (const casecore::error& e) {
      RC_ASSERT(e.code() == casecore::errc::invalid_argument);
      RC_ASSERT(!valid);
      RC_TAG("refused");
    }
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
