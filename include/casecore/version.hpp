// casecore/version.hpp — the version of the casecore headers in use.
//
// casecore follows semantic versioning from 1.0; before 1.0 a minor release (0.2 → 0.3) may break
// the API or the database schema (CHANGELOG.md says how to migrate) and a patch release never does.
// The installed CMake package is compatible within one minor version (find_package(casecore 0.2)).
// This header is the one source of the number: CMakeLists.txt reads project(VERSION) from it, so
// the library, the CMake package, casecore.pc and the Debian package can never disagree with it.
// Example:
//   #if CASECORE_VERSION_NUMBER >= 200  // 0.2.0 or later
//   std::puts(CASECORE_VERSION);         // "0.2.0"
#pragma once

/// Major version: incompatible API changes (from 1.0 on).
#define CASECORE_VERSION_MAJOR 0
/// Minor version: before 1.0, may break the API or the schema; from 1.0, compatible additions.
#define CASECORE_VERSION_MINOR 2
/// Patch version: fixes only, never an API or schema break.
#define CASECORE_VERSION_PATCH 0
/// The version as a string, "MAJOR.MINOR.PATCH".
#define CASECORE_VERSION "0.2.0"
/// The version as one comparable number: MAJOR * 10000 + MINOR * 100 + PATCH.
#define CASECORE_VERSION_NUMBER (CASECORE_VERSION_MAJOR * 10000 + CASECORE_VERSION_MINOR * 100 + CASECORE_VERSION_PATCH)
