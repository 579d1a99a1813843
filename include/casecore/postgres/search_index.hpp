// casecore/postgres/search_index.hpp — the search_index port on PostgreSQL, shared by every host.
//
// Concept: documents live in casecore_search_docs (index name, document id, file id, words), next to
// the application's tables, so every host that reaches the database searches the same documents
// (the SQLite FTS5 index is a file on one host). The words are search_index::split_words of the
// text, computed in C++ and stored as a text[] with a GIN index; a query is `words @> query words`.
// Why not to_tsvector: even the 'simple' configuration runs PostgreSQL's own parser, which splits
// differently from the port's contract ("quick-witted", "foo_bar", "3.14", e-mail addresses and
// URLs become other tokens), lowercases non-ASCII letters (the contract folds ASCII only), and caps
// a tsvector at 1 MB and a lexeme at 2 KB. Storing the port's own words answers every query exactly
// like the reference implementation; stemming and stop words never apply. A word longer than 64
// bytes or not valid UTF-8 is stored and queried as "#" + its SHA-256 ('#' is never a word byte),
// so GIN entry limits and the server encoding cannot change a result.
// Guarantee: index() is one transaction (all documents or none) that upserts by id, so repeating a
// batch never duplicates; results are ids in byte order (COLLATE "C"). Fenced writes check and
// raise the scope's mark (casecore_search_fences) in that same transaction: a stale token is refused
// with lease_lost and nothing is written, on every host.
// Failure modes: invalid_argument for a document id that is not valid UTF-8 or contains NUL (and
// everything search_index refuses); lease_lost for a stale fence; the database's errors otherwise
// (retried by the unit of work where retryable). Works through a transaction pooler (no session state).
// Example:
//   auto index = casecore::postgres::make_search_index(db);      // creates its tables if missing
//   index->index(docs, casecore::fence{"file:17", token});
//   auto ids = index->query("invoice march");
// Thread safety: the index may be used from many threads and hosts at once (each call is its own
// unit of work on `db`'s pool).
#pragma once

#include <casecore/database.hpp>
#include <casecore/migration.hpp>
#include <casecore/ports/search_index.hpp>

#include <memory>
#include <string>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::postgres {

/// Settings of a PostgreSQL search index.
struct search_index_options {
  /// Which index: several indexes share the tables, told apart by this name (1..100 printable ASCII).
  std::string name = "default";
};

/// The tables the index needs (component "casecore_pg_search"); make_search_index applies them.
std::vector<migration> search_index_migrations();

/// A search index in `db` (a PostgreSQL database); applies casecore's and the index's migrations.
std::unique_ptr<search_index> make_search_index(database db, search_index_options options = {});

} // namespace casecore::postgres

CASECORE_API_END
