// Versioned ordered lists (casecore/ordered_list.hpp). Their tables come with the repository
// component's migration (src/repository.cpp: casecore.repository v1 creates lists and links).
#include <casecore/counter.hpp>
#include <casecore/ordered_list.hpp>

#include <algorithm>

namespace casecore {

namespace ordered_list {

namespace {
void check_list(transaction& tx, std::string_view name, std::string_view key) {
  counter::check_name(name);
  counter::check_scope(key);
  if (!tx.writable()) raise(errc::invalid_argument, "ordered_list writes need a write transaction");
}

// Create-or-bump the list row: takes the list's row lock (PostgreSQL) before touching its items.
std::int64_t bump_list(transaction& tx, std::string_view name, std::string_view key) {
  return tx.query_one<std::int64_t>(
      "INSERT INTO casecore_lists(name, list_key, version, updated_at, updated_by) VALUES($1, $2, 1, casecore_now_us(), $3) "
      "ON CONFLICT(name, list_key) DO UPDATE SET version = casecore_lists.version + 1, updated_at = excluded.updated_at, "
      "updated_by = excluded.updated_by RETURNING version",
      name, key, tx.actor());
}

std::vector<std::int64_t> items_of(transaction& tx, std::string_view name, std::string_view key) {
  std::vector<std::int64_t> out;
  for (auto r : tx.exec("SELECT item FROM casecore_list_items WHERE name = $1 AND list_key = $2 ORDER BY pos", name, key))
    out.push_back(r.get<std::int64_t>(0));
  return out;
}

void write_items(transaction& tx, std::string_view name, std::string_view key, const std::vector<std::int64_t>& items) {
  tx.exec("DELETE FROM casecore_list_items WHERE name = $1 AND list_key = $2", name, key);
  for (std::size_t i = 0; i < items.size(); ++i)
    tx.exec("INSERT INTO casecore_list_items(name, list_key, item, pos) VALUES($1, $2, $3, $4)", name, key, items[i],
            static_cast<std::int64_t>(i));
}
} // namespace

list_snapshot read(transaction& tx, std::string_view name, std::string_view key) {
  counter::check_name(name);
  counter::check_scope(key);
  list_snapshot s;
  s.version = tx.query_optional<std::int64_t>("SELECT version FROM casecore_lists WHERE name = $1 AND list_key = $2", name, key)
                  .value_or(0);
  s.items = items_of(tx, name, key);
  return s;
}

std::int64_t append(transaction& tx, std::string_view name, std::string_view key, std::int64_t item) {
  check_list(tx, name, key);
  // The savepoint undoes the version bump when the item turns out to be present already.
  return tx.savepoint([&](transaction& t) {
    const auto v = bump_list(t, name, key);
    auto r = t.exec("INSERT INTO casecore_list_items(name, list_key, item, pos) VALUES($1, $2, $3, "
                    "(SELECT COUNT(*) FROM casecore_list_items WHERE name = $1 AND list_key = $2)) "
                    "ON CONFLICT(name, list_key, item) DO NOTHING RETURNING pos",
                    name, key, item);
    if (r.empty()) raise(errc::already_exists, "item " + std::to_string(item) + " is already in list " + std::string(name));
    return v;
  });
}

std::int64_t remove(transaction& tx, std::string_view name, std::string_view key, std::int64_t item) {
  check_list(tx, name, key);
  return tx.savepoint([&](transaction& t) {
    const auto v = bump_list(t, name, key);
    auto items = items_of(t, name, key);
    const auto it = std::find(items.begin(), items.end(), item);
    if (it == items.end()) raise(errc::not_found, "item " + std::to_string(item) + " is not in list " + std::string(name));
    items.erase(it);
    write_items(t, name, key, items);
    return v;
  });
}

std::int64_t reorder(transaction& tx, std::string_view name, std::string_view key, std::int64_t expected_version,
                     const std::vector<std::int64_t>& order) {
  check_list(tx, name, key);
  auto wanted = order;
  std::sort(wanted.begin(), wanted.end());
  if (std::adjacent_find(wanted.begin(), wanted.end()) != wanted.end())
    raise(errc::invalid_argument, "reorder lists an item twice");
  return tx.savepoint([&](transaction& t) {
    // Compare-and-set on the list version first: it locks the list, so the items read next are the
    // ones that version describes.
    auto r = t.exec("UPDATE casecore_lists SET version = version + 1, updated_at = casecore_now_us(), updated_by = $4 "
                    "WHERE name = $1 AND list_key = $2 AND version = $3 RETURNING version",
                    name, key, expected_version, t.actor());
    if (r.empty()) {
      auto now = t.exec("SELECT version, updated_by, updated_at FROM casecore_lists WHERE name = $1 AND list_key = $2", name, key);
      if (now.empty()) {
        if (order.empty() && expected_version == 0) return std::int64_t{0};
        raise(errc::not_found, "list " + std::string(name) + " does not exist");
      }
      throw version_conflict("list " + std::string(name) + ": expected version " + std::to_string(expected_version) +
                                 ", current " + std::to_string(now[0].get<std::int64_t>(0)),
                             expected_version, now[0].get<std::int64_t>(0), now[0].get<std::string>(1),
                             now[0].get<std::int64_t>(2));
    }
    auto have = items_of(t, name, key);
    std::sort(have.begin(), have.end());
    if (have != wanted) raise(errc::invalid_argument, "reorder must be a permutation of the list's current items");
    write_items(t, name, key, order);
    return r[0].get<std::int64_t>(0);
  });
}

} // namespace ordered_list

} // namespace casecore
