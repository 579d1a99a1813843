// casecore/detail/step.hpp — named points inside casecore where a test can pause a unit of work.
//
// Concept: feature and unit-of-work code call `step("jobs.claim.locked")` at the few places where
// the order of two concurrent transactions decides correctness ("A reads, B commits, A writes").
// Normally no hook is installed and a step costs one relaxed atomic load. The testing kit's
// `step_gate` (casecore/testing/steps.hpp) installs a hook that parks the calling thread at a named
// point until the test releases it, so interleavings are forced instead of hoped for.
// Guarantee: a hook sees every step of every thread of this process while it is installed.
// Failure modes: whatever the hook throws propagates into the unit of work (a test may inject a
// failure at an exact point that way).
#pragma once

#include <atomic>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

/// The hook signature: called with the step's name on the thread that reached it.
using step_hook = void (*)(std::string_view name);

/// Install `hook` (nullptr removes it); returns the previous one. Thread-safe.
step_hook set_step_hook(step_hook hook) noexcept;

/// The hook in force (nullptr when none).
step_hook current_step_hook() noexcept;

/// A named point; runs the installed hook, if any.
inline void step(std::string_view name) {
  if (auto hook = current_step_hook()) hook(name);
}

} // namespace casecore::detail

CASECORE_API_END
