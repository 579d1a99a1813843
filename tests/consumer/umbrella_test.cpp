// The umbrella header compiles alone (this file includes nothing else), its version agrees with the
// CMake project's (CASECORE_EXPECTED_VERSION comes from project(VERSION)), and a program using it links.
#include <casecore/casecore.hpp>

#include <cstdio>
#include <cstring>

static_assert(CASECORE_VERSION_NUMBER ==
              CASECORE_VERSION_MAJOR * 10000 + CASECORE_VERSION_MINOR * 100 + CASECORE_VERSION_PATCH);

int main() {
  if (std::strcmp(CASECORE_VERSION, CASECORE_EXPECTED_VERSION) != 0) {
    std::fprintf(stderr, "umbrella: CASECORE_VERSION is %s, the CMake project says %s\n", CASECORE_VERSION,
                 CASECORE_EXPECTED_VERSION);
    return 1;
  }
  auto db = casecore::open("sqlite::memory:");
  const auto n = db.write([](casecore::transaction& tx) { return tx.query_one<int>("SELECT $1 + 1", 41); });
  std::printf("umbrella: casecore %s, %d\n", CASECORE_VERSION, n);
  return n == 42 ? 0 : 1;
}
