// casecore/sqlite/search_index.hpp — the search_index port on SQLite FTS5 (the embedded default).
//
// Concept: the index lives in its own SQLite database file, so the application database never
// carries it; several handles and processes on one host may share the file (WAL, busy waits).
// It belongs to the SQLite adapter (target casecore::sqlite): casecore::core links no SQLite.
// Guarantee: the port's contract (ports/search_index.hpp), checked by
// casecore::testing::check_search_index; one host only — hosts sharing a PostgreSQL database use
// casecore/postgres/search_index.hpp instead.
// Failure modes: configuration when the file cannot be opened or is not an index; the port's
// typed errors otherwise.
//
// @code
//   auto index = casecore::make_sqlite_search_index("search.db");
//   const std::vector<casecore::search_document> docs{{"doc-1", 7, "quick brown fox"}};
//   index->index(docs);
//   auto hits = index->query("brown"); // {"doc-1"}
// @endcode
#pragma once

#include <casecore/export.hpp>
#include <casecore/ports/search_index.hpp>

#include <filesystem>
#include <memory>

CASECORE_API_BEGIN

namespace casecore {

/// The embedded default: SQLite FTS5 in its own database file `path` (created if missing), so the
/// application database never carries the index. Several handles and processes may share the file.
std::unique_ptr<search_index> make_sqlite_search_index(const std::filesystem::path& path);

} // namespace casecore

CASECORE_API_END
