// casecore/state_machine.hpp — the allowed transitions of a status column.
//
// A state_machine is a plain, immutable description: the column that holds the status and the
// edges (from -> to) the host allows. repository<T>::transition applies an edge with ONE
// compare-and-set UPDATE (WHERE id = ? AND status = from [AND version = ?]); see repository.hpp.
// Thread safety: immutable after construction, safe to share. Failure modes: construction throws
// invalid_argument for a bad column name or an empty state.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// The allowed transitions of one status column.
class state_machine {
public:
  /// `column` holds the status; `edges` are the allowed (from, to) pairs.
  state_machine(std::string column, std::vector<std::pair<std::string, std::string>> edges);
  /// The status column.
  const std::string& column() const noexcept { return column_; }
  /// True when from -> to is declared.
  bool allows(std::string_view from, std::string_view to) const;
  /// Every state named by an edge.
  std::set<std::string> states() const;

private:
  std::string column_;
  std::set<std::pair<std::string, std::string>, std::less<>> edges_;
};

} // namespace casecore

CASECORE_API_END
