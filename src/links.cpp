// Unique links between rows (casecore/links.hpp). Their table comes with the repository component's
// migration (src/repository.cpp).
#include <casecore/counter.hpp>
#include <casecore/links.hpp>

namespace casecore {

namespace links {

namespace {
void check_kind(std::string_view kind) { counter::check_name(kind); }
} // namespace

bool link(transaction& tx, std::string_view kind, std::int64_t from, std::int64_t to, link_cardinality cardinality) {
  check_kind(kind);
  if (!tx.writable()) raise(errc::invalid_argument, "links need a write transaction");
  const bool one_from = cardinality == link_cardinality::many_to_one || cardinality == link_cardinality::one_to_one;
  const bool one_to = cardinality == link_cardinality::one_to_many || cardinality == link_cardinality::one_to_one;
  // The unique constraints decide; DO NOTHING keeps the caller's transaction healthy on a conflict.
  auto r = tx.exec("INSERT INTO casecore_links(kind, from_id, to_id, from_unique, to_unique, created_at, created_by) "
                   "VALUES($1, $2, $3, $4, $5, casecore_now_us(), $6) ON CONFLICT DO NOTHING RETURNING from_id",
                   kind, from, to, one_from ? std::optional<std::int64_t>(from) : std::nullopt,
                   one_to ? std::optional<std::int64_t>(to) : std::nullopt, tx.actor());
  if (!r.empty()) return true;
  if (tx.query_optional<std::int64_t>("SELECT 1 FROM casecore_links WHERE kind = $1 AND from_id = $2 AND to_id = $3", kind,
                                      from, to))
    return false;
  raise(errc::already_exists, "link " + std::string(kind) + " " + std::to_string(from) + " -> " + std::to_string(to) +
                                  " conflicts with an existing link");
}

bool unlink(transaction& tx, std::string_view kind, std::int64_t from, std::int64_t to) {
  check_kind(kind);
  return tx.exec("DELETE FROM casecore_links WHERE kind = $1 AND from_id = $2 AND to_id = $3", kind, from, to).affected() > 0;
}

std::vector<std::int64_t> targets(transaction& tx, std::string_view kind, std::int64_t from) {
  check_kind(kind);
  std::vector<std::int64_t> out;
  for (auto r : tx.exec("SELECT to_id FROM casecore_links WHERE kind = $1 AND from_id = $2 ORDER BY to_id", kind, from))
    out.push_back(r.get<std::int64_t>(0));
  return out;
}

std::vector<std::int64_t> sources(transaction& tx, std::string_view kind, std::int64_t to) {
  check_kind(kind);
  std::vector<std::int64_t> out;
  for (auto r : tx.exec("SELECT from_id FROM casecore_links WHERE kind = $1 AND to_id = $2 ORDER BY from_id", kind, to))
    out.push_back(r.get<std::int64_t>(0));
  return out;
}

} // namespace links

} // namespace casecore
