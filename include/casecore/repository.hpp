// casecore/repository.hpp — versioned repositories and atomic mutations of a host's table.
//
// The host describes its table once (table_descriptor: table, id column, field bindings made from
// member pointers with casecore::column) and gets a repository<T>. casecore adds four columns to that
// table: version, created_at, updated_at, updated_by (create_table_migration / adopt_table_migration).
//
// Concurrency guarantee: every write path bumps `version` in the same statement that writes:
//   * update / remove: WHERE id = ? AND version = ?; a stale version throws version_conflict carrying
//     the current version, who wrote it and when (not_found when the row is gone);
//   * modify: read, apply fn, compare-and-set; on conflict re-read and re-apply (fn must be pure);
//   * add (field delta): one UPDATE col = col + n with optional bounds, no read-modify-write;
//   * transition: one compare-and-set UPDATE on the status column of a state_machine;
//   * replace_children: parent version bump + delete + insert, in the caller's transaction;
//   * set_where (bulk): one UPDATE that bumps the version of every row it touches.
// Related concepts in their own headers: ordered_list.hpp (versioned work queues), links.hpp
// (unique links between rows), state_machine.hpp.
// Failure modes: invalid_argument (bad identifiers / input; nothing written), not_found,
// version_conflict, invalid_transition, constraint_violation (a delta would cross its bound),
// plus the unit of work's retryable errors.
// Thread safety: repository<T> and descriptors are immutable after construction; share them freely.
// A transaction is used by one thread.
#pragma once

/// @file
/// Versioned repositories (guarantee and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db)
/// struct work_order { std::string title; std::string status; std::int64_t qty = 0; };
/// -->
/// @code
/// static const casecore::repository<work_order> orders({"work_orders", "id", {
///     casecore::column("title", &work_order::title), casecore::column("status", &work_order::status),
///     casecore::column("qty", &work_order::qty)}});
/// const auto table = orders.create_table_migration("myapp", 1);
/// casecore::migrate(db, std::span(&table, 1));
/// auto r = db.write([&](casecore::transaction& tx) { return orders.insert(tx, {"pump", "open", 2}); });
/// r.data.qty = 3;
/// db.write([&](casecore::transaction& tx) { orders.update(tx, r); });  // version_conflict if stale
/// orders.modify(db, r.id, [](work_order& o) { o.status = "done"; });   // re-read and re-apply on conflict
/// @endcode

#include <casecore/database.hpp>
#include <casecore/detail/repository_core.hpp>
#include <casecore/migration.hpp>
#include <casecore/state_machine.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// An entity with its id and the bookkeeping casecore keeps for it.
template <class T> struct record {
  std::int64_t id = 0;       ///< primary key
  T data{};                  ///< the host's entity
  std::int64_t version = 0;  ///< 1 after insert, +1 per write
  micros created_at = 0;     ///< database clock at insert
  micros updated_at = 0;     ///< database clock at the last write
  std::string updated_by;    ///< write_options::actor of the last write
};

/// How one column maps to a member of T.
template <class T> struct field {
  std::string column;                               ///< column name (validated identifier)
  std::string sql_type;                             ///< column type used by create_table_migration
  std::function<value(const T&)> get;               ///< entity -> parameter
  std::function<void(T&, const value&)> set;        ///< result cell -> entity
};

namespace detail {
template <class M> std::string sql_type_of() {
  if constexpr (is_optional<M>::value) {
    auto t = sql_type_of<typename M::value_type>();
    return t.substr(0, t.size() - std::string_view(" NOT NULL").size());
  } else if constexpr (std::is_same_v<M, bool> || std::is_integral_v<M> || std::is_enum_v<M>) {
    return "BIGINT NOT NULL";
  } else if constexpr (std::is_floating_point_v<M>) {
    return "DOUBLE PRECISION NOT NULL";
  } else if constexpr (std::is_same_v<M, blob>) {
    return "{{blob}} NOT NULL";
  } else {
    return "TEXT NOT NULL";
  }
}
} // namespace detail

/// Map column `name` to the data member `member` of T (types: integers, enums, bool, double, string, blob, optional).
template <class T, class M> field<T> column(std::string name, M T::*member) {
  return {std::move(name), detail::sql_type_of<M>(), [member](const T& e) { return to_value(e.*member); },
          [member](T& e, const value& v) { e.*member = from_value<M>(v); }};
}

/// How a host's table maps to T.
template <class T> struct table_descriptor {
  std::string table;               ///< table name
  std::string id_column = "id";    ///< BIGINT primary key column
  std::vector<field<T>> fields;    ///< the data columns
};

/// A child table: rows that belong to a parent entity and are replaced as a whole.
template <class C> struct child_descriptor {
  std::string table;                ///< child table name
  std::string parent_column;        ///< column holding the parent's id
  std::vector<field<C>> fields;     ///< the data columns
  std::string order_by;             ///< optional column to read children in order (a field's column)
};

/// Bounds of a field delta (both inclusive; unset = unbounded).
struct delta_bounds {
  std::optional<std::int64_t> min; ///< the result may not go below this
  std::optional<std::int64_t> max; ///< the result may not go above this
};

/// A versioned repository of T.
template <class T> class repository {
public:
  /// Build from a descriptor; throws invalid_argument for bad identifiers or duplicate columns.
  explicit repository(table_descriptor<T> d) : desc_(std::move(d)), core_(make_core(desc_)) {}

  /// The row, or nullopt.
  std::optional<record<T>> find(transaction& tx, std::int64_t id) const {
    auto r = core_.find(tx, id);
    if (r.empty()) return std::nullopt;
    return to_record(r[0]);
  }
  /// The row; not_found when missing.
  record<T> get(transaction& tx, std::int64_t id) const {
    auto r = find(tx, id);
    if (!r) raise(errc::not_found, desc_.table + " " + std::to_string(id) + " not found");
    return std::move(*r);
  }
  /// Rows whose `column` (a declared field) equals `v`, by id.
  template <class V> std::vector<record<T>> find_by(transaction& tx, std::string_view column, const V& v) const {
    return to_records(core_.find_by(tx, column, to_value(v)));
  }
  /// Every row, by id.
  std::vector<record<T>> all(transaction& tx) const { return to_records(core_.all(tx)); }

  /// Insert `data` (id 0 = let the database assign one); returns the stored record (version 1).
  record<T> insert(transaction& tx, T data, std::int64_t id = 0) const {
    const auto vals = values_of(data);
    auto r = core_.insert(tx, id ? std::optional<std::int64_t>(id) : std::nullopt, vals);
    record<T> out = meta_of(r[0]);
    out.data = std::move(data);
    return out;
  }
  /// Write `r.data` if `r.version` is current; bumps r.version / updated_at / updated_by in place.
  void update(transaction& tx, record<T>& r) const {
    const auto vals = values_of(r.data);
    auto res = core_.update(tx, r.id, r.version, vals);
    if (res.empty()) core_.throw_stale(tx, r.id, r.version);
    take_meta(r, res[0]);
  }
  /// Delete row `id` if `expected_version` is current.
  void remove(transaction& tx, std::int64_t id, std::int64_t expected_version) const {
    core_.remove(tx, id, expected_version);
  }
  /// Read, apply fn(T&), compare-and-set; on conflict re-read and re-apply, up to `attempts` times.
  template <class F> record<T> modify(transaction& tx, std::int64_t id, F&& fn, int attempts = 32) const {
    for (int a = 1;; ++a) {
      record<T> r = get(tx, id);
      const auto seen = r.version;
      fn(r.data);
      auto res = core_.update(tx, r.id, seen, values_of(r.data));
      if (!res.empty()) {
        take_meta(r, res[0]);
        return r;
      }
      if (a >= attempts) core_.throw_stale(tx, id, seen);
    }
  }
  /// modify in its own write transaction (retried by the unit of work on busy / serialization).
  template <class F> record<T> modify(database& db, std::int64_t id, F&& fn, const write_options& o = {}) const {
    return db.write([&](transaction& tx) { return modify(tx, id, fn); }, o);
  }
  /// Atomically `column += delta` within `bounds`, bumping the version; returns the new value.
  /// constraint_violation when the result would cross a bound (nothing changes), not_found when missing.
  std::int64_t add(transaction& tx, std::int64_t id, std::string_view column, std::int64_t delta,
                   delta_bounds bounds = {}) const {
    return core_.add(tx, id, column, delta, bounds.min, bounds.max);
  }
  /// Move the status of `id` from `from` to `to` in one compare-and-set (optionally also on the
  /// version); returns the new version. invalid_transition when the edge is not declared or the row
  /// is not in `from` (or not at `expected_version`) any more; nothing changes then.
  std::int64_t transition(transaction& tx, std::int64_t id, const state_machine& m, std::string_view from,
                          std::string_view to, std::optional<std::int64_t> expected_version = std::nullopt) const {
    return core_.transition(tx, id, m, from, to, expected_version);
  }
  /// Bulk: set `set_column` = v on every row whose `where_column` = match, bumping each version.
  template <class V, class W>
  std::int64_t set_where(transaction& tx, std::string_view set_column, const V& v, std::string_view where_column,
                         const W& match) const {
    return core_.set_where(tx, set_column, to_value(v), where_column, to_value(match));
  }
  /// Replace every child of `parent_id` by `children` and bump the parent's version (checked against
  /// `expected_version` when given); returns the parent's new version.
  template <class C>
  std::int64_t replace_children(transaction& tx, std::int64_t parent_id, const child_descriptor<C>& d,
                                const std::vector<C>& children,
                                std::optional<std::int64_t> expected_version = std::nullopt) const {
    const auto cols = child_columns(d);
    std::vector<std::vector<value>> rows;
    rows.reserve(children.size());
    for (const auto& c : children) {
      std::vector<value> row;
      row.reserve(d.fields.size());
      for (const auto& f : d.fields) row.push_back(f.get(c));
      rows.push_back(std::move(row));
    }
    const auto v = core_.bump(tx, parent_id, expected_version); // locks the parent first
    detail::replace_child_rows(tx, d.table, d.parent_column, cols, parent_id, rows);
    return v;
  }
  /// The children of `parent_id` (ordered by d.order_by when set).
  template <class C>
  std::vector<C> children(transaction& tx, std::int64_t parent_id, const child_descriptor<C>& d) const {
    const auto cols = child_columns(d);
    auto r = detail::child_rows(tx, d.table, d.parent_column, cols, parent_id, d.order_by);
    std::vector<C> out;
    for (auto row : r) {
      C c{};
      for (std::size_t i = 0; i < d.fields.size(); ++i) d.fields[i].set(c, row[i]);
      out.push_back(std::move(c));
    }
    return out;
  }

  /// A migration that creates the table with the declared fields and casecore's columns.
  migration create_table_migration(std::string component, int version) const {
    return {std::move(component), version, "create " + desc_.table, core_.create_table_sql(), "", ""};
  }
  /// A migration that adds casecore's columns to an existing table.
  migration adopt_table_migration(std::string component, int version) const {
    return {std::move(component), version, "version " + desc_.table, core_.adopt_table_sql(), "", ""};
  }
  /// The descriptor.
  const table_descriptor<T>& descriptor() const noexcept { return desc_; }

private:
  static detail::repository_core make_core(const table_descriptor<T>& d) {
    std::vector<std::string> cols, types;
    for (const auto& f : d.fields) {
      if (!f.get || !f.set) raise(errc::invalid_argument, "field " + f.column + " has no getter/setter");
      cols.push_back(f.column);
      types.push_back(f.sql_type);
    }
    return detail::repository_core(d.table, d.id_column, std::move(cols), std::move(types));
  }
  template <class C> static std::vector<std::string> child_columns(const child_descriptor<C>& d) {
    std::vector<std::string> cols;
    for (const auto& f : d.fields) cols.push_back(f.column);
    return cols;
  }
  std::vector<value> values_of(const T& data) const {
    std::vector<value> v;
    v.reserve(desc_.fields.size());
    for (const auto& f : desc_.fields) v.push_back(f.get(data));
    return v;
  }
  static record<T> meta_of(row_ref row) {
    record<T> r;
    r.id = row.get<std::int64_t>(0);
    take_meta(r, row, 1);
    return r;
  }
  // Reads version, created_at, updated_at, updated_by starting at column `at`.
  static void take_meta(record<T>& r, row_ref row, std::size_t at = 0) {
    r.version = row.get<std::int64_t>(at);
    r.created_at = row.get<std::int64_t>(at + 1);
    r.updated_at = row.get<std::int64_t>(at + 2);
    r.updated_by = row.get<std::string>(at + 3);
  }
  record<T> to_record(row_ref row) const {
    record<T> r = meta_of(row);
    for (std::size_t i = 0; i < desc_.fields.size(); ++i) desc_.fields[i].set(r.data, row[detail::meta_columns + i]);
    return r;
  }
  std::vector<record<T>> to_records(const result& res) const {
    std::vector<record<T>> out;
    out.reserve(res.size());
    for (auto row : res) out.push_back(to_record(row));
    return out;
  }

  table_descriptor<T> desc_;
  detail::repository_core core_;
};

} // namespace casecore

CASECORE_API_END
