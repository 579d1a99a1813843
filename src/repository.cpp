#include <casecore/counter.hpp>
#include <casecore/database.hpp>
#include <casecore/detail/repository_identifier.hpp>
#include <casecore/migration.hpp>
#include <casecore/repository.hpp>
#include <casecore/state_machine.hpp>

#include <algorithm>
#include <set>

namespace casecore {

namespace detail {

std::vector<migration> repository_migrations() {
  return {
      {"casecore.repository", 1, "ordered lists and links",
       "CREATE TABLE casecore_lists(name TEXT NOT NULL, list_key TEXT NOT NULL, version BIGINT NOT NULL,"
       " updated_at BIGINT NOT NULL, updated_by TEXT NOT NULL DEFAULT '', PRIMARY KEY(name, list_key));"
       "CREATE TABLE casecore_list_items(name TEXT NOT NULL, list_key TEXT NOT NULL, item BIGINT NOT NULL,"
       " pos BIGINT NOT NULL, PRIMARY KEY(name, list_key, item), UNIQUE(name, list_key, pos));"
       "CREATE TABLE casecore_links(kind TEXT NOT NULL, from_id BIGINT NOT NULL, to_id BIGINT NOT NULL,"
       " from_unique BIGINT, to_unique BIGINT, created_at BIGINT NOT NULL, created_by TEXT NOT NULL DEFAULT '',"
       " PRIMARY KEY(kind, from_id, to_id), UNIQUE(kind, from_unique), UNIQUE(kind, to_unique));"
       "CREATE INDEX casecore_links_to ON casecore_links(kind, to_id, from_id);",
       "", ""},
  };
}

namespace {

constexpr std::string_view meta_names[] = {"version", "created_at", "updated_at", "updated_by"};

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : std::string()) + v[i];
  return out;
}

std::string placeholder(std::size_t n) { return "$" + std::to_string(n); }

} // namespace

repository_core::repository_core(std::string table, std::string id_column, std::vector<std::string> columns,
                                 std::vector<std::string> types)
    : table_(std::move(table)), id_(std::move(id_column)), columns_(std::move(columns)), types_(std::move(types)) {
  check_identifier(table_, "table");
  check_identifier(id_, "id column");
  if (columns_.empty()) raise(errc::invalid_argument, "repository " + table_ + " declares no field");
  std::set<std::string> seen{id_};
  for (auto m : meta_names) seen.emplace(m);
  for (const auto& c : columns_) {
    check_identifier(c, "column");
    if (!seen.insert(c).second) raise(errc::invalid_argument, "column " + c + " is declared twice or reserved");
  }
  // Every SQL text is built once here so the per-connection statement cache always hits.
  select_ = "SELECT " + id_ + ", version, created_at, updated_at, updated_by, " + join(columns_, ", ") + " FROM " + table_;
  find_ = select_ + " WHERE " + id_ + " = $1";
  const std::string returning = " RETURNING " + id_ + ", version, created_at, updated_at, updated_by";
  std::string vals, sets;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    vals += ", " + placeholder(i + 2);
    sets += ", " + columns_[i] + " = " + placeholder(i + 4);
  }
  const std::string cols = join(columns_, ", ");
  insert_ = "INSERT INTO " + table_ + "(version, created_at, updated_at, updated_by, " + cols +
            ") VALUES(1, casecore_now_us(), casecore_now_us(), $1" + vals + ")" + returning;
  std::string vals_with_id;
  for (std::size_t i = 0; i < columns_.size(); ++i) vals_with_id += ", " + placeholder(i + 3);
  insert_with_id_ = "INSERT INTO " + table_ + "(" + id_ + ", version, created_at, updated_at, updated_by, " + cols +
                    ") VALUES($1, 1, casecore_now_us(), casecore_now_us(), $2" + vals_with_id + ")" + returning;
  update_ = "UPDATE " + table_ + " SET version = version + 1, updated_at = casecore_now_us(), updated_by = $3" + sets +
            " WHERE " + id_ + " = $1 AND version = $2 RETURNING version, created_at, updated_at, updated_by";
  remove_ = "DELETE FROM " + table_ + " WHERE " + id_ + " = $1 AND version = $2";
  meta_ = "SELECT version, updated_by, updated_at FROM " + table_ + " WHERE " + id_ + " = $1";
  bump_ = "UPDATE " + table_ + " SET version = version + 1, updated_at = casecore_now_us(), updated_by = $2 WHERE " +
          id_ + " = $1 RETURNING version";
  bump_checked_ = "UPDATE " + table_ +
                  " SET version = version + 1, updated_at = casecore_now_us(), updated_by = $2 WHERE " + id_ +
                  " = $1 AND version = $3 RETURNING version";
}

std::size_t repository_core::field_index(std::string_view column) const {
  for (std::size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i] == column) return i;
  raise(errc::invalid_argument, "column '" + std::string(column.substr(0, 80)) + "' is not a field of " + table_);
}

result repository_core::find(transaction& tx, std::int64_t id) const { return tx.exec(find_, id); }

result repository_core::find_by(transaction& tx, std::string_view column, const value& v) const {
  const auto& c = columns_[field_index(column)];
  return tx.exec(select_ + " WHERE " + c + " = $1 ORDER BY " + id_, v);
}

result repository_core::all(transaction& tx) const { return tx.exec(select_ + " ORDER BY " + id_); }

result repository_core::insert(transaction& tx, std::optional<std::int64_t> id, std::span<const value> fields) const {
  std::vector<value> params;
  params.reserve(fields.size() + 2);
  if (id) {
    if (*id <= 0) raise(errc::invalid_argument, "explicit ids must be positive");
    params.emplace_back(*id);
  }
  params.emplace_back(tx.actor());
  params.insert(params.end(), fields.begin(), fields.end());
  // A taken id is an already_exists error from the adapter; undo just this statement so the caller's
  // transaction stays usable.
  return tx.savepoint([&](transaction& t) { return t.exec_values(id ? insert_with_id_ : insert_, params); });
}

result repository_core::update(transaction& tx, std::int64_t id, std::int64_t expected, std::span<const value> fields) const {
  std::vector<value> params;
  params.reserve(fields.size() + 3);
  params.emplace_back(id);
  params.emplace_back(expected);
  params.emplace_back(tx.actor());
  params.insert(params.end(), fields.begin(), fields.end());
  return tx.exec_values(update_, params);
}

void repository_core::remove(transaction& tx, std::int64_t id, std::int64_t expected) const {
  if (tx.exec(remove_, id, expected).affected() == 0) throw_stale(tx, id, expected);
}

void repository_core::throw_stale(transaction& tx, std::int64_t id, std::int64_t expected) const {
  auto r = tx.exec(meta_, id);
  if (r.empty()) raise(errc::not_found, table_ + " " + std::to_string(id) + " not found");
  const auto current = r[0].get<std::int64_t>(0);
  throw version_conflict(table_ + " " + std::to_string(id) + ": expected version " + std::to_string(expected) +
                             ", current " + std::to_string(current) + " by '" + r[0].get<std::string>(1) + "'",
                         expected, current, r[0].get<std::string>(1), r[0].get<std::int64_t>(2));
}

std::int64_t repository_core::add(transaction& tx, std::int64_t id, std::string_view column, std::int64_t delta,
                                  std::optional<std::int64_t> min, std::optional<std::int64_t> max) const {
  const auto& c = columns_[field_index(column)];
  if (min && max && *min > *max) raise(errc::invalid_argument, "delta bounds: min > max");
  // One statement: the bound is checked against the value the UPDATE itself sees under its row lock.
  std::string sql = "UPDATE " + table_ + " SET " + c + " = " + c +
                    " + $1, version = version + 1, updated_at = casecore_now_us(), updated_by = $2 WHERE " + id_ + " = $3";
  if (min) sql += " AND " + c + " + $1 >= $4";
  if (max) sql += std::string(" AND ") + c + " + $1 <= " + (min ? "$5" : "$4");
  sql += " RETURNING " + c;
  std::vector<value> params{delta, tx.actor(), id};
  if (min) params.emplace_back(*min);
  if (max) params.emplace_back(*max);
  auto r = tx.exec_values(sql, params);
  if (!r.empty()) return r[0].get<std::int64_t>(0);
  auto now = tx.exec("SELECT " + c + " FROM " + table_ + " WHERE " + id_ + " = $1", id);
  if (now.empty()) raise(errc::not_found, table_ + " " + std::to_string(id) + " not found");
  raise(errc::constraint_violation, table_ + "." + c + " = " + now[0].get<std::string>(0) + ": adding " +
                                        std::to_string(delta) + " would cross its bound");
}

std::int64_t repository_core::transition(transaction& tx, std::int64_t id, const state_machine& m, std::string_view from,
                                         std::string_view to, std::optional<std::int64_t> expected) const {
  const auto& c = columns_[field_index(m.column())];
  if (!m.allows(from, to))
    throw invalid_transition(table_ + " " + std::to_string(id) + ": " + std::string(from) + " -> " + std::string(to) +
                             " is not an allowed transition");
  std::string sql = "UPDATE " + table_ + " SET " + c +
                    " = $1, version = version + 1, updated_at = casecore_now_us(), updated_by = $2 WHERE " + id_ +
                    " = $3 AND " + c + " = $4";
  std::vector<value> params{std::string(to), tx.actor(), id, std::string(from)};
  if (expected) {
    sql += " AND version = $5";
    params.emplace_back(*expected);
  }
  sql += " RETURNING version";
  auto r = tx.exec_values(sql, params);
  if (!r.empty()) return r[0].get<std::int64_t>(0);
  auto now = tx.exec("SELECT " + c + ", version FROM " + table_ + " WHERE " + id_ + " = $1", id);
  if (now.empty()) raise(errc::not_found, table_ + " " + std::to_string(id) + " not found");
  throw invalid_transition(table_ + " " + std::to_string(id) + ": cannot go " + std::string(from) + " -> " +
                           std::string(to) + ", it is now '" + now[0].get<std::string>(0) + "' at version " +
                           std::to_string(now[0].get<std::int64_t>(1)));
}

std::int64_t repository_core::bump(transaction& tx, std::int64_t id, std::optional<std::int64_t> expected) const {
  auto r = expected ? tx.exec(bump_checked_, id, tx.actor(), *expected) : tx.exec(bump_, id, tx.actor());
  if (r.empty()) throw_stale(tx, id, expected.value_or(0));
  return r[0].get<std::int64_t>(0);
}

std::int64_t repository_core::set_where(transaction& tx, std::string_view set_column, const value& v,
                                        std::string_view where_column, const value& match) const {
  const auto& s = columns_[field_index(set_column)];
  const auto& w = columns_[field_index(where_column)];
  return tx
      .exec("UPDATE " + table_ + " SET " + s + " = $1, version = version + 1, updated_at = casecore_now_us(), updated_by = $2 WHERE " +
                w + " = $3",
            v, tx.actor(), match)
      .affected();
}

std::string repository_core::create_table_sql() const {
  std::string sql = "CREATE TABLE " + table_ + "(" + id_ + " {{id}}";
  for (std::size_t i = 0; i < columns_.size(); ++i) sql += ", " + columns_[i] + " " + types_[i];
  sql += ", version BIGINT NOT NULL DEFAULT 1, created_at BIGINT NOT NULL DEFAULT 0,"
         " updated_at BIGINT NOT NULL DEFAULT 0, updated_by TEXT NOT NULL DEFAULT '')";
  return sql;
}

std::string repository_core::adopt_table_sql() const {
  return "ALTER TABLE " + table_ + " ADD COLUMN version BIGINT NOT NULL DEFAULT 1;"
         "ALTER TABLE " + table_ + " ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;"
         "ALTER TABLE " + table_ + " ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;"
         "ALTER TABLE " + table_ + " ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';";
}

void replace_child_rows(transaction& tx, std::string_view table, std::string_view parent_column,
                        std::span<const std::string> columns, std::int64_t parent,
                        std::span<const std::vector<value>> rows) {
  check_identifier(table, "child table");
  check_identifier(parent_column, "parent column");
  std::string cols(parent_column), vals = "$1";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    check_identifier(columns[i], "child column");
    cols += ", " + columns[i];
    vals += ", $" + std::to_string(i + 2);
  }
  for (const auto& r : rows)
    if (r.size() != columns.size()) raise(errc::invalid_argument, "child row has the wrong number of values");
  tx.exec("DELETE FROM " + std::string(table) + " WHERE " + std::string(parent_column) + " = $1", parent);
  const std::string insert = "INSERT INTO " + std::string(table) + "(" + cols + ") VALUES(" + vals + ")";
  std::vector<value> params;
  for (const auto& r : rows) {
    params.assign(1, value{parent});
    params.insert(params.end(), r.begin(), r.end());
    tx.exec_values(insert, params);
  }
}

result child_rows(transaction& tx, std::string_view table, std::string_view parent_column,
                  std::span<const std::string> columns, std::int64_t parent, std::string_view order_by) {
  check_identifier(table, "child table");
  check_identifier(parent_column, "parent column");
  std::string cols;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    check_identifier(columns[i], "child column");
    cols += (i ? ", " : "") + columns[i];
  }
  std::string sql = "SELECT " + cols + " FROM " + std::string(table) + " WHERE " + std::string(parent_column) + " = $1";
  if (!order_by.empty()) {
    check_identifier(order_by, "order_by column");
    sql += " ORDER BY " + std::string(order_by);
  }
  return tx.exec(sql, parent);
}

} // namespace detail

} // namespace casecore
