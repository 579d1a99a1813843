// src/narrow.hpp (internal: GSL is a private dependency) — checked narrowing at API edges (Microsoft GSL's gsl::narrow).
//
// Sizes, counts and int64 <-> size_t conversions where a caller's value crosses into another type
// go through narrow(): a value that does not fit is an invalid_argument naming what it was, never
// a silently wrapped number. Not for hot inner loops whose bounds are already checked.
#pragma once

#include <casecore/error.hpp>

#include <gsl/narrow>

#include <string>
#include <string_view>

namespace casecore::detail {

/// `v` as a T, or invalid_argument("<what> is out of range") when it does not fit exactly.
template <class T, class U> T narrow(U v, std::string_view what) {
  try {
    return gsl::narrow<T>(v);
  } catch (const gsl::narrowing_error&) {
    raise(errc::invalid_argument, std::string(what) + " is out of range (" + std::to_string(v) + ")");
  }
}

} // namespace casecore::detail
