// casecore/testing/conformance.hpp — contract suites for the ports, to run against any implementation.
//
// A host that plugs its own blob store (S3...), search index (OpenSearch...) or task transport
// (Redis...) into casecore runs the same checks casecore runs against its shipped implementations.
// Each check_* function calls the factory for a fresh, empty instance whenever it needs one, runs
// its cases (including a many-threads section) and throws conformance_failure with a description of
// the first broken expectation; it returns normally when the implementation conforms. The checks
// use no test framework, so they work from doctest, Catch2, GoogleTest or a plain main():
//
//   TEST_CASE("my S3 store conforms") {
//     CHECK_NOTHROW(casecore::testing::check_blob_store([] { return make_my_s3_store(fresh_bucket()); }));
//   }
//
// Thread safety: the functions themselves are reentrant; they call the factory from the caller's
// thread only.
#pragma once

#include <casecore/ports/blob_store.hpp>
#include <casecore/ports/search_index.hpp>
#include <casecore/ports/task_transport.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// An implementation broke the port's contract; what() says which expectation failed.
class conformance_failure : public std::runtime_error {
public:
  /// A failed contract check described by `what`.
  explicit conformance_failure(const std::string& what) : std::runtime_error(what) {}
};

/// Makes a fresh, empty blob store.
using blob_store_factory = std::function<std::unique_ptr<blob_store>()>;
/// Makes a fresh, empty search index.
using search_index_factory = std::function<std::unique_ptr<search_index>()>;
/// Makes a fresh task transport.
using task_transport_factory = std::function<std::unique_ptr<task_transport>()>;

/// Put/get/exists/remove/list, write-once, streaming writers and readers, abort, bad keys,
/// concurrent puts, fencing (stale tokens refused, racing holders leave the newest one's blob).
void check_blob_store(const blob_store_factory& make);
/// Idempotent indexing by id, replace, remove_file, count, word queries, bad input, concurrency,
/// fencing (stale tokens refused, racing holders leave the newest one's document).
void check_search_index(const search_index_factory& make);
/// No lost wake-up after subscribe, coalescing, topic isolation, fan-out, bad input, threads.
void check_task_transport(const task_transport_factory& make);

} // namespace casecore::testing

CASECORE_API_END
