// casecore/ports/search_index.hpp — full-text search over documents extracted from files.
//
// Documents are indexed by a caller-chosen id (use event_id() from file_registry.hpp so that
// re-indexing a file yields the same ids): indexing an id again replaces the document, so running an
// import twice never duplicates documents. Every document belongs to a file, and all documents of a
// file can be removed at once (re-index = remove_file + index, or just index again).
// Query semantics, shared by every implementation so the conformance suite can compare them: the
// query and the text are split into words (runs of ASCII letters/digits and non-ASCII bytes, ASCII
// compared case-insensitively); a document matches when it contains every query word. Results are
// ids in ascending order, at most `limit`.
//
// Fencing (fence.hpp): index() and remove_file() accept an optional fence; a write whose token is
// lower than the highest the index accepted for that scope is refused with lease_lost and changes
// nothing, so a paused "index" stage cannot overwrite a newer claimant's documents.
//
// Implementing the port (OpenSearch, Elasticsearch, ...): override the protected do_* hooks; the
// public methods validate first. Fenced writes go to do_index_fenced / do_remove_file_fenced (the
// default refuses with errc::unsupported): check the scope's mark, raise it and write in one atomic
// step. Run casecore::testing::check_search_index against it. Shipped: memory (reference), SQLite
// FTS5 in a file (one host), PostgreSQL (many hosts, postgres/search_index.hpp).
//
// Example:
//   index.index(docs, casecore::fence{"file:17", claim.fencing_token});
//   auto hits = index.query("invoice 2024", 50);
//
// Thread safety: every method may be called from many threads at once; an index() batch is applied
// atomically (all documents or none) by the shipped implementations. Failure modes:
// invalid_argument for empty/oversized ids, an empty query or a malformed fence; lease_lost for a
// stale fence; errc::backend_error for storage failures.
#pragma once

#include <casecore/ports/fence.hpp>
#include <casecore/value.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// One searchable document.
struct search_document {
  std::string id;           ///< stable id (1..200 bytes); re-indexing the same id replaces the document
  std::int64_t file_id = 0; ///< the registered file it came from
  std::string text;         ///< searchable text
};

/// A searchable collection of documents.
class search_index {
public:
  virtual ~search_index() = default;
  /// Insert or replace `docs` by id, all or none (lease_lost when `guard` is stale).
  void index(std::span<const search_document> docs, const fence& guard = {});
  /// Remove every document of `file_id`; returns how many were removed (lease_lost when stale).
  std::size_t remove_file(std::int64_t file_id, const fence& guard = {});
  /// Number of documents (of one file when given).
  std::size_t count(std::optional<std::int64_t> file_id = std::nullopt);
  /// Ids of documents containing every word of `words`, ascending, at most `limit`.
  std::vector<std::string> query(std::string_view words, std::size_t limit = 100);

  /// The words of `text` as every implementation must see them (lowercased ASCII).
  static std::vector<std::string> split_words(std::string_view text);

protected:
  /// Hooks implementers override; input is already validated and `words` is non-empty.
  virtual void do_index(std::span<const search_document> docs) = 0;
  /// Remove every document of `file_id`; how many were removed.
  virtual std::size_t do_remove_file(std::int64_t file_id) = 0;
  /// Documents of `file_id`, or of every file when nullopt.
  virtual std::size_t do_count(std::optional<std::int64_t> file_id) = 0;
  /// Up to `limit` document keys that contain every word of `words`.
  virtual std::vector<std::string> do_query(const std::vector<std::string>& words, std::size_t limit) = 0;
  /// do_index guarded by `guard` (token > 0), atomically with the scope's mark. Default: unsupported.
  virtual void do_index_fenced(std::span<const search_document> docs, const fence& guard);
  /// do_remove_file guarded by `guard` (token > 0), atomically with the mark. Default: unsupported.
  virtual std::size_t do_remove_file_fenced(std::int64_t file_id, const fence& guard);
};

/// The reference implementation in memory.
std::unique_ptr<search_index> make_memory_search_index();

// The embedded default, SQLite FTS5, is in casecore/sqlite/search_index.hpp (the SQLite adapter).

} // namespace casecore

CASECORE_API_END
