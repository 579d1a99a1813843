#include <casecore/transaction.hpp>
#include <casecore/detail/backend.hpp>

namespace casecore {

transaction::transaction(detail::connection& conn, detail::tx_mode mode, int attempt, std::string actor,
                         const detail::hook_runner& hooks)
    : conn_(conn), hooks_(hooks), mode_(mode), attempt_(attempt), actor_(std::move(actor)) {}

result transaction::exec_values(std::string_view sql, std::span<const value> params) {
  try {
    return conn_.exec(sql, params);
  } catch (...) {
    poisoned_ = true;
    throw;
  }
}

void transaction::exec_script(std::string_view sql) {
  try {
    conn_.exec_script(sql);
  } catch (...) {
    poisoned_ = true;
    throw;
  }
}

casecore::dialect transaction::dialect() const noexcept { return conn_.dialect(); }
const sql_fragments& transaction::sql() const noexcept { return conn_.sql(); }

micros transaction::now_us() {
  return query_one<micros>("SELECT " + std::string(sql().now_us));
}

void transaction::after_commit(std::function<void()> hook) {
  if (!hook) raise(errc::invalid_argument, "after_commit hook is empty");
  commit_hooks_.push_back(std::move(hook));
}

void transaction::after_rollback(std::function<void()> hook) {
  if (!hook) raise(errc::invalid_argument, "after_rollback hook is empty");
  rollback_hooks_.push_back(std::move(hook));
}

transaction::savepoint_mark transaction::open_savepoint() {
  savepoint_mark m{++depth_, poisoned_, commit_hooks_.size(), rollback_hooks_.size()};
  conn_.exec_script("SAVEPOINT casecore_sp" + std::to_string(m.depth));
  return m;
}

void transaction::release_savepoint(const savepoint_mark& m) {
  conn_.exec_script("RELEASE SAVEPOINT casecore_sp" + std::to_string(m.depth));
  --depth_;
}

void transaction::rollback_savepoint(const savepoint_mark& m) noexcept {
  depth_ = m.depth - 1;
  try {
    conn_.exec_script("ROLLBACK TO SAVEPOINT casecore_sp" + std::to_string(m.depth));
    conn_.exec_script("RELEASE SAVEPOINT casecore_sp" + std::to_string(m.depth));
    poisoned_ = m.poisoned; // the failed statements are undone
  } catch (...) { // the outer transaction stays poisoned and rolls back as a whole
    poisoned_ = true;
  }
  // Work inside the savepoint is undone: its commit hooks must never run, its rollback hooks run now.
  commit_hooks_.resize(m.commit_hooks);
  std::vector<std::function<void()>> undone(std::make_move_iterator(rollback_hooks_.begin() + static_cast<std::ptrdiff_t>(m.rollback_hooks)),
                                            std::make_move_iterator(rollback_hooks_.end()));
  rollback_hooks_.resize(m.rollback_hooks);
  hooks_.run(undone);
}

} // namespace casecore
