// The one test binary. Run as a child process (race tests), it runs the requested child instead.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <casecore/testing/process.hpp>

int main(int argc, char** argv) {
  int status = 0;
  if (casecore::testing::run_child_if_requested(argc, argv, status)) return status;
  doctest::Context context(argc, argv);
  return context.run();
}
