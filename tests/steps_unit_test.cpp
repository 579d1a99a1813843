// The step gate of the testing kit: parks, releases and fails threads at named casecore steps.
#include <casecore/detail/step.hpp>
#include <casecore/testing/steps.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace casecore;
using casecore::testing::step_gate;

TEST_CASE("a step gate parks the first arrival until released, lets others pass") {
  step_gate gate;
  gate.pause_at("unit.point");
  std::atomic<int> after{0};
  std::thread a([&] {
    detail::step("unit.point");
    ++after;
  });
  REQUIRE(gate.wait_parked("unit.point"));
  CHECK(after == 0);
  detail::step("unit.point"); // the second arrival is not armed: passes at once
  gate.release("unit.point");
  a.join();
  CHECK(after == 1);
  CHECK(gate.reached("unit.point") == 2);
  CHECK(gate.seen() == std::vector<std::string>{"unit.point"});
}

TEST_CASE("a step gate throws an injected error at a step, once") {
  step_gate gate;
  gate.fail_at("unit.fail", errc::busy);
  CHECK_THROWS_AS(detail::step("unit.fail"), error);
  CHECK_NOTHROW(detail::step("unit.fail"));
}

TEST_CASE("one gate at a time; none installed means steps do nothing") {
  {
    step_gate gate;
    CHECK_THROWS_AS(step_gate{}, invalid_argument);
  }
  CHECK(!detail::current_step_hook());
  CHECK_NOTHROW(detail::step("unit.none"));
}

TEST_CASE("destroying the gate frees a parked thread") {
  std::thread a;
  {
    step_gate gate;
    gate.pause_at("unit.stuck");
    a = std::thread([] { detail::step("unit.stuck"); });
    REQUIRE(gate.wait_parked("unit.stuck"));
  }
  a.join();
}

TEST_CASE("pause_at refuses a count below 1 and arms nothing") {
  step_gate gate;
  CHECK_THROWS_AS(gate.pause_at("unit.count", 0), invalid_argument);
  CHECK_NOTHROW(detail::step("unit.count")); // not armed: passes at once
  CHECK(gate.reached("unit.count") == 1);
}
