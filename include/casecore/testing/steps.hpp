// casecore/testing/steps.hpp — force interleavings: park a thread at a named step of casecore.
//
// Concept: casecore marks the points where the order of concurrent transactions matters with
// named steps (casecore/detail/step.hpp; the names are listed in docs/testing-kit.md). A step_gate
// installed by a test parks the next thread that reaches an armed step until the test releases it,
// so "A reads, B commits, A writes" happens exactly in that order, every run:
//
//   casecore::testing::step_gate gate;
//   gate.pause_at("lease.acquire.before");          // the next thread to get there waits
//   std::thread a([&] { lease::try_acquire(db, "x", "a", 1s); });
//   REQUIRE(gate.wait_parked("lease.acquire.before"));
//   lease::try_acquire(db, "x", "b", 1s);           // B runs to completion meanwhile
//   gate.release("lease.acquire.before");           // then A goes on
//   a.join();
//
// A gate can also throw a casecore error at a step (an injected fault at an exact point).
// Guarantee: one gate per process at a time (a second one throws invalid_argument); destroying
// the gate releases every parked thread and removes the hook. Thread-safe.
#pragma once

#include <casecore/error.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// Parks threads at named casecore steps until the test lets them go.
class step_gate {
public:
  /// Install the gate (invalid_argument when another gate is installed).
  step_gate();
  /// Release every parked thread and remove the hook.
  ~step_gate();
  step_gate(const step_gate&) = delete;
  step_gate& operator=(const step_gate&) = delete;

  /// Park the next `count` arrivals at `name` (only on thread `only`, when given).
  void pause_at(std::string name, int count = 1, std::optional<std::thread::id> only = std::nullopt);
  /// Throw error(`code`) from the next arrival at `name` (only on thread `only`, when given).
  void fail_at(std::string name, errc code, std::optional<std::thread::id> only = std::nullopt);
  /// Wait until a thread is parked at `name`; false when none got there within `timeout`.
  bool wait_parked(std::string_view name, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Let the threads parked at `name` go on (and disarm it).
  void release(std::string_view name);
  /// Let every parked thread go on and disarm every step.
  void release_all();
  /// How often `name` was reached since the gate was installed.
  std::size_t reached(std::string_view name) const;
  /// Every step name reached so far, in first-arrival order (to discover the names).
  std::vector<std::string> seen() const;

  /// The hook (called by casecore's steps on the arriving thread).
  void arrive(std::string_view name);

private:
  struct arm {
    int pause = 0;                         // arrivals still to park
    std::optional<errc> fail;              // throw this at the next arrival
    std::optional<std::thread::id> only;   // restrict to one thread
    int parked = 0;                        // threads parked now
    std::uint64_t generation = 0;          // bumped by release()
  };
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::map<std::string, arm, std::less<>> arms_;
  std::map<std::string, std::size_t, std::less<>> counts_;
  std::vector<std::string> order_;
  bool closing_ = false;
};

} // namespace casecore::testing

CASECORE_API_END
