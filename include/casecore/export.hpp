// casecore/export.hpp — which declarations a shared casecore exports.
//
// A shared casecore (BUILD_SHARED_LIBS=ON) is compiled with hidden default visibility
// (CXX_VISIBILITY_PRESET hidden, VISIBILITY_INLINES_HIDDEN): only what the public headers under
// include/casecore/ declare is exported — each of them wraps its declarations in
// CASECORE_API_BEGIN / CASECORE_API_END — while the sources' internals and the static SQLiteCpp
// they link stay private to the library. A static casecore defines CASECORE_STATIC_DEFINE (CMake
// and casecore.pc pass it on to consumers) and the macros expand to nothing.
// Example:
//   #include <casecore/export.hpp>
//   CASECORE_API_BEGIN
//   namespace casecore { int exported(); }
//   CASECORE_API_END
#pragma once

#if defined(CASECORE_STATIC_DEFINE)
/// Exports one declaration from a shared casecore (nothing in a static build).
#define CASECORE_API
/// Opens a region whose declarations a shared casecore exports.
#define CASECORE_API_BEGIN
/// Closes the region CASECORE_API_BEGIN opened.
#define CASECORE_API_END
#else
#define CASECORE_API __attribute__((visibility("default")))
#define CASECORE_API_BEGIN _Pragma("GCC visibility push(default)")
#define CASECORE_API_END _Pragma("GCC visibility pop")
#endif
