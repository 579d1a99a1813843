// Properties of versioned ordered lists (casecore::ordered_list) on a real database (SQLite file or
// PostgreSQL schema, per CASECORE_TEST_BACKEND): a reorder by a permutation of the current items,
// at the current version, leaves exactly that order with dense positions 0..n-1 and version + 1; a
// reorder at any other version throws version_conflict, and one that is not a permutation
// (an item missing, foreign or repeated) throws invalid_argument — both leaving the list exactly as
// it was. Each generated case uses its own list in one write transaction (failed reorders roll back
// their savepoint only, which is itself under test: the list must be unchanged afterwards).
// SQLite runs with synchronous=off: durability is not this property's subject, and 10,000 cases
// with an fsync per commit would only measure the disk.
#include "property.hpp"

#include <casecore/migration.hpp>
#include <casecore/ordered_list.hpp>
#include <casecore/testing/fixture.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <vector>

using casecore::proof::check_property;
namespace ol = casecore::ordered_list;

namespace {

template <class E, class F> bool throws(F&& f) {
  try {
    f();
    return false;
  } catch (const E&) {
    return true;
  }
}

std::vector<std::int64_t> positions(casecore::transaction& tx, const std::string& key) {
  std::vector<std::int64_t> out;
  for (auto r : tx.exec("SELECT pos FROM casecore_list_items WHERE name = $1 AND list_key = $2 ORDER BY pos", "plist", key))
    out.push_back(r.get<std::int64_t>(0));
  return out;
}

} // namespace

TEST_CASE("property: reorder keeps a permutation a permutation; a stale version or a non-permutation changes nothing") {
  const auto kind = casecore::testing::selected_backend();
  casecore::testing::scratch_database scratch(kind, kind == casecore::testing::backend_kind::sqlite ? "synchronous=off" : "");
  auto db = scratch.open();
  casecore::migrate(db);
  int serial = 0;
  const int cases = casecore::proof::case_count();
  const auto r = check_property(std::string("ordered_list reorder on ") + casecore::testing::name(kind), cases, [&] {
    const auto items = *rc::gen::unique<std::vector<std::int64_t>>(rc::gen::inRange<std::int64_t>(-1000000, 1000000));
    const std::vector<std::int64_t> list(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(items.size(), 10)));
    const auto seed = *rc::gen::arbitrary<std::uint32_t>();
    const auto stale_delta = *rc::gen::oneOf(rc::gen::inRange<std::int64_t>(1, 12), rc::gen::inRange<std::int64_t>(-12, 0));
    const auto breakage = *rc::gen::inRange(0, 4);
    const std::string key = "case-" + std::to_string(++serial);
    db.write([&](casecore::transaction& tx) {
      for (const auto item : list) ol::append(tx, "plist", key, item);
      const auto before = ol::read(tx, "plist", key);
      RC_ASSERT(before.items == list);
      RC_ASSERT(before.version == static_cast<std::int64_t>(list.size()));
      if (list.empty()) {
        // A list never written: the empty order at version 0 is a no-op, anything else not_found.
        RC_ASSERT(ol::reorder(tx, "plist", key, 0, {}) == 0);
        RC_ASSERT(throws<casecore::error>([&] { ol::reorder(tx, "plist", key, 1, {}); }));
        return;
      }
      auto order = list;
      std::shuffle(order.begin(), order.end(), std::mt19937(seed));

      // A stale (or future) version conflicts and changes nothing.
      const auto stale = before.version - stale_delta;
      RC_ASSERT(stale != before.version);
      RC_ASSERT(throws<casecore::version_conflict>([&] { ol::reorder(tx, "plist", key, stale, order); }));
      RC_ASSERT(ol::read(tx, "plist", key).items == before.items);
      RC_ASSERT(ol::read(tx, "plist", key).version == before.version);

      // Not a permutation of the current items: refused, nothing changes.
      auto wrong = order;
      switch (breakage) {
        case 0: wrong.pop_back(); break;                                  // an item missing
        case 1: wrong.push_back(2000000); break;                          // a foreign item
        case 2: wrong.push_back(wrong.front()); break;                    // an item twice
        default: wrong.back() = 2000001; break;                           // one replaced
      }
      RC_ASSERT(throws<casecore::invalid_argument>([&] { ol::reorder(tx, "plist", key, before.version, wrong); }));
      RC_ASSERT(ol::read(tx, "plist", key).items == before.items);
      RC_ASSERT(ol::read(tx, "plist", key).version == before.version);

      // The permutation at the current version: exactly that order, dense positions, version + 1.
      RC_ASSERT(ol::reorder(tx, "plist", key, before.version, order) == before.version + 1);
      const auto after = ol::read(tx, "plist", key);
      RC_ASSERT(after.items == order);
      RC_ASSERT(after.version == before.version + 1);
      std::vector<std::int64_t> dense(order.size());
      for (std::size_t i = 0; i < dense.size(); ++i) dense[i] = static_cast<std::int64_t>(i);
      RC_ASSERT(positions(tx, key) == dense);
      auto sorted_after = after.items, sorted_before = before.items;
      std::sort(sorted_after.begin(), sorted_after.end());
      std::sort(sorted_before.begin(), sorted_before.end());
      RC_ASSERT(sorted_after == sorted_before);

      // The version the first reorder used is now stale.
      RC_ASSERT(throws<casecore::version_conflict>([&] { ol::reorder(tx, "plist", key, before.version, list); }));
      RC_ASSERT(ol::read(tx, "plist", key).items == order);
    });
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
