// Properties of values and errors, the two types every result and failure passes through: a value
// converts back to what it was made from (integers, doubles, text, blobs, NULL as nullopt); text that
// a driver hands over for a number parses exactly when it is a number; reading a value as a type it
// cannot be is a typed backend_error that names both types; raise(code, message) throws the error
// (and the subclass callers branch on) carrying exactly that code and message.
#include "property.hpp"

#include <casecore/error.hpp>
#include <casecore/value.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using casecore::proof::any_string;
using casecore::proof::check_property;
using casecore::proof::string_of;

namespace {

const int cases = casecore::proof::case_count();

template <class T> std::optional<std::string> read_error(const casecore::value& v) {
  try {
    (void)casecore::from_value<T>(v);
    return std::nullopt;
  } catch (const casecore::error& e) {
    RC_ASSERT(e.code() == casecore::errc::backend_error);
    return std::string(e.what());
  }
}

} // namespace

TEST_CASE("property: values convert back to what they were made from") {
  const auto r = check_property("value round trips and typed mismatches", cases, [] {
    const auto i = *rc::gen::oneOf(rc::gen::arbitrary<std::int64_t>(),
                                   rc::gen::element(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()));
    RC_ASSERT(casecore::from_value<std::int64_t>(casecore::to_value(i)) == i);
    RC_ASSERT(casecore::from_value<std::optional<std::int64_t>>(casecore::to_value(std::optional<std::int64_t>(i))) == i);
    RC_ASSERT(!casecore::from_value<std::optional<std::int64_t>>(casecore::to_value(std::optional<std::int64_t>())).has_value());
    // A driver may hand a number over as text (PostgreSQL text format): it parses back exactly.
    RC_ASSERT(casecore::from_value<std::int64_t>(casecore::value{std::to_string(i)}) == i);
    const auto d = *rc::gen::map(rc::gen::arbitrary<std::int64_t>(), [](std::int64_t x) { return static_cast<double>(x) / 1024.0; });
    RC_ASSERT(casecore::from_value<double>(casecore::to_value(d)) == d);
    const auto s = *any_string();
    RC_ASSERT(casecore::from_value<std::string>(casecore::to_value(s)) == s);
    casecore::blob b;
    for (char c : s) b.bytes.push_back(static_cast<std::byte>(c));
    RC_ASSERT(casecore::from_value<casecore::blob>(casecore::to_value(b)) == b);
    RC_ASSERT(casecore::from_value<casecore::blob>(casecore::value{s}) == b); // text read as bytes
    RC_ASSERT(casecore::from_value<bool>(casecore::to_value(i != 0)) == (i != 0));
    // Text is a number exactly when it is one (booleans arrive as "t" / "f").
    const auto text = *rc::gen::oneOf(string_of("-0123456789", 1, 22), any_string(), rc::gen::element<std::string>("t", "f", ""));
    const bool numeric = !text.empty() && text.find_first_not_of("-0123456789") == std::string::npos;
    const auto err = read_error<std::int64_t>(casecore::value{text});
    if (text == "t" || text == "f") RC_ASSERT(!err.has_value());
    else if (!numeric) RC_ASSERT(err.has_value());
    // Mismatched types: a typed error naming what was wanted and what was found.
    RC_ASSERT(read_error<std::int64_t>(casecore::to_value(b)).value_or("").find("blob column as integer") != std::string::npos);
    RC_ASSERT(read_error<std::string>(casecore::to_value(d)).value_or("").find("double column as text") != std::string::npos);
    RC_ASSERT(read_error<casecore::blob>(casecore::to_value(i)).value_or("").find("integer column as blob") != std::string::npos);
    RC_ASSERT(read_error<double>(casecore::to_value(b)).value_or("").find("blob column as double") != std::string::npos);
    RC_ASSERT(read_error<std::int64_t>(casecore::value{casecore::null}).value_or("").find("NULL column as integer") != std::string::npos);
    RC_ASSERT(read_error<double>(casecore::value{"not a number " + text}).has_value());
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: raise(code, message) throws that code and message, as the subclass callers branch on") {
  const auto r = check_property("raise / error codes", cases, [] {
    const auto code = static_cast<casecore::errc>(*rc::gen::inRange(0, static_cast<int>(casecore::errc::internal) + 1));
    const auto message = *any_string();
    const auto name = std::string(casecore::to_string(code));
    RC_ASSERT(name != "unknown");
    try {
      casecore::raise(code, message);
      RC_FAIL("raise returned");
    } catch (const casecore::error& e) {
      RC_ASSERT(e.code() == code);
      const std::string expected = name + ": " + message;
      RC_ASSERT(std::string(e.what()) == std::string(expected.c_str())); // what() is a C string: up to a NUL
      // The retry contract of error.hpp / retry.hpp: exactly these causes are worth running again.
      using casecore::errc;
      const bool retry = code == errc::busy || code == errc::serialization_failure || code == errc::deadlock ||
                         code == errc::connection_lost || code == errc::pool_timeout;
      RC_ASSERT(e.retryable() == retry);
      const bool is_conflict = code == casecore::errc::version_conflict || code == casecore::errc::invalid_transition ||
                               code == casecore::errc::lease_lost;
      RC_ASSERT(e.conflict() == is_conflict);
      const bool typed = (code == errc::invalid_argument) == (dynamic_cast<const casecore::invalid_argument*>(&e) != nullptr) &&
                         (code == errc::bad_url) == (dynamic_cast<const casecore::bad_url*>(&e) != nullptr) &&
                         (code == errc::not_found) == (dynamic_cast<const casecore::not_found*>(&e) != nullptr) &&
                         (code == errc::already_exists) == (dynamic_cast<const casecore::already_exists*>(&e) != nullptr) &&
                         (code == errc::version_conflict) == (dynamic_cast<const casecore::version_conflict*>(&e) != nullptr) &&
                         (code == errc::invalid_transition) == (dynamic_cast<const casecore::invalid_transition*>(&e) != nullptr) &&
                         (code == errc::lease_lost) == (dynamic_cast<const casecore::lease_lost*>(&e) != nullptr) &&
                         (code == errc::backend_unavailable) == (dynamic_cast<const casecore::backend_unavailable*>(&e) != nullptr) &&
                         (code == errc::outcome_unknown) == (dynamic_cast<const casecore::outcome_unknown*>(&e) != nullptr);
      RC_ASSERT(typed);
      RC_TAG(name);
    }
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
