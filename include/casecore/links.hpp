// casecore/links.hpp — unique links between rows (backlinks that are never overwritten).
//
// Concept: rows (kind, from, to) in the shared table casecore_links. A link kind may allow one link
// per side (one_to_one, many_to_one, one_to_many) or many; the database's unique constraints decide,
// so two users linking at once can never both win a one-per-side slot (the work-order seed's
// overwritten backlinks). Always use the same cardinality for one kind.
// Guarantees: link() is idempotent for the exact same link; a link that would break the kind's
// cardinality throws already_exists and leaves the transaction usable.
// Failure modes: invalid_argument (bad kind; nothing written), already_exists.
// Thread safety: free functions on the caller's transaction.
//
//   links::link(tx, "order->customer", order_id, customer_id, link_cardinality::many_to_one);
//   auto customers = links::targets(tx, "order->customer", order_id);
#pragma once

#include <casecore/transaction.hpp>

#include <cstdint>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// How many links one side of a link kind may have.
enum class link_cardinality {
  many_to_many, ///< any number on both sides
  many_to_one,  ///< each `from` links to at most one `to` (repair order -> its work order)
  one_to_many,  ///< each `to` has at most one `from`
  one_to_one,   ///< both
};

/// Unique link rows (kind, from, to) in the shared table casecore_links. Always use the same
/// cardinality for one kind: it is enforced per row by unique constraints.
namespace links {
/// Create the link; false when this exact link exists; already_exists when the cardinality is taken.
bool link(transaction& tx, std::string_view kind, std::int64_t from, std::int64_t to,
          link_cardinality cardinality = link_cardinality::many_to_many);
/// Remove the link; false when it did not exist.
bool unlink(transaction& tx, std::string_view kind, std::int64_t from, std::int64_t to);
/// The `to` ids linked from `from`, ascending.
std::vector<std::int64_t> targets(transaction& tx, std::string_view kind, std::int64_t from);
/// The `from` ids linked to `to`, ascending.
std::vector<std::int64_t> sources(transaction& tx, std::string_view kind, std::int64_t to);
} // namespace links

} // namespace casecore

CASECORE_API_END
