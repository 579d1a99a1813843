// casecore/detail/repository_core.hpp — the type-erased engine behind repository<T>.
//
// repository<T> converts entities to/from value lists; everything that touches SQL lives here,
// compiled once. Rows are read as: id, version, created_at, updated_at, updated_by, fields...
// Thread safety: immutable after construction (prebuilt SQL text), safe to share between threads.
#pragma once

#include <casecore/state_machine.hpp>
#include <casecore/transaction.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

/// Number of bookkeeping columns before the fields in every row repository_core returns.
inline constexpr std::size_t meta_columns = 5;

/// SQL engine of one versioned table.
class repository_core {
public:
  repository_core(std::string table, std::string id_column, std::vector<std::string> columns,
                  std::vector<std::string> types);

  result find(transaction& tx, std::int64_t id) const;
  result find_by(transaction& tx, std::string_view column, const value& v) const;
  result all(transaction& tx) const;
  result insert(transaction& tx, std::optional<std::int64_t> id, std::span<const value> fields) const;
  result update(transaction& tx, std::int64_t id, std::int64_t expected, std::span<const value> fields) const;
  void remove(transaction& tx, std::int64_t id, std::int64_t expected) const;
  [[noreturn]] void throw_stale(transaction& tx, std::int64_t id, std::int64_t expected) const;
  std::int64_t add(transaction& tx, std::int64_t id, std::string_view column, std::int64_t delta,
                   std::optional<std::int64_t> min, std::optional<std::int64_t> max) const;
  std::int64_t transition(transaction& tx, std::int64_t id, const state_machine& m, std::string_view from,
                          std::string_view to, std::optional<std::int64_t> expected) const;
  std::int64_t bump(transaction& tx, std::int64_t id, std::optional<std::int64_t> expected) const;
  std::int64_t set_where(transaction& tx, std::string_view set_column, const value& v, std::string_view where_column,
                         const value& match) const;
  std::string create_table_sql() const;
  std::string adopt_table_sql() const;
  const std::string& table() const noexcept { return table_; }

private:
  std::size_t field_index(std::string_view column) const;
  std::string table_, id_;
  std::vector<std::string> columns_, types_;
  std::string select_, find_, insert_, insert_with_id_, update_, remove_, meta_, bump_, bump_checked_;
};

/// Replace every child row of `parent` in `table` (rows hold `columns` values, parent column first).
void replace_child_rows(transaction& tx, std::string_view table, std::string_view parent_column,
                        std::span<const std::string> columns, std::int64_t parent,
                        std::span<const std::vector<value>> rows);
/// The child rows of `parent` (columns in the given order).
result child_rows(transaction& tx, std::string_view table, std::string_view parent_column,
                  std::span<const std::string> columns, std::int64_t parent, std::string_view order_by);

} // namespace casecore::detail

CASECORE_API_END
