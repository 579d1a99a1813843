// casecore/ordered_list.hpp — versioned ordered lists: work queues that several users reorder.
//
// Concept: a named list (name, key) of item ids with dense positions 0..n-1 and a version, in the
// shared tables casecore_lists / casecore_list_items (created by casecore's migrations). Every
// change bumps the version; reorder() is applied against the version the caller read, so two users
// reordering one queue never interleave their moves (the work-order seed's "queue reordering
// conflicts").
// Guarantees: the items always stay a permutation with dense positions; a stale reorder changes
// nothing and throws version_conflict (with who changed the list and when).
// Failure modes: invalid_argument (bad names, a reorder that is not a permutation; nothing
// written), already_exists (append of a present item), not_found, version_conflict.
// Thread safety: free functions on the caller's transaction.
//
//   auto snap = ordered_list::read(tx, "queue", "shop-1");
//   std::reverse(snap.items.begin(), snap.items.end());
//   ordered_list::reorder(tx, "queue", "shop-1", snap.version, snap.items);
#pragma once

#include <casecore/transaction.hpp>

#include <cstdint>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// A list's items in position order, with the version they were read at.
struct list_snapshot {
  std::int64_t version = 0;          ///< 0 for a list never written
  std::vector<std::int64_t> items;   ///< item ids, position 0 first
};

/// Versioned ordered lists (work queues): shared tables casecore_lists / casecore_list_items.
namespace ordered_list {
/// The items of list (name, key) and its version.
list_snapshot read(transaction& tx, std::string_view name, std::string_view key);
/// Append `item` at the end; already_exists when it is in the list. Returns the new version.
std::int64_t append(transaction& tx, std::string_view name, std::string_view key, std::int64_t item);
/// Remove `item`, closing the gap; not_found when absent. Returns the new version.
std::int64_t remove(transaction& tx, std::string_view name, std::string_view key, std::int64_t item);
/// Put the list in `order` (a permutation of its items) if `expected_version` is current; returns
/// the new version. version_conflict when stale, invalid_argument when not a permutation.
std::int64_t reorder(transaction& tx, std::string_view name, std::string_view key, std::int64_t expected_version,
                     const std::vector<std::int64_t>& order);
} // namespace ordered_list

} // namespace casecore

CASECORE_API_END
