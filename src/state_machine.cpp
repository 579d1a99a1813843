#include <casecore/detail/repository_identifier.hpp>
#include <casecore/error.hpp>
#include <casecore/state_machine.hpp>

namespace casecore {

state_machine::state_machine(std::string column, std::vector<std::pair<std::string, std::string>> edges)
    : column_(std::move(column)) {
  detail::check_identifier(column_, "status column");
  for (auto& e : edges) {
    if (e.first.empty() || e.second.empty()) raise(errc::invalid_argument, "state names must not be empty");
    edges_.insert(std::move(e));
  }
}

bool state_machine::allows(std::string_view from, std::string_view to) const {
  return edges_.count(std::pair<std::string, std::string>(from, to)) != 0;
}

std::set<std::string> state_machine::states() const {
  std::set<std::string> s;
  for (const auto& e : edges_) {
    s.insert(e.first);
    s.insert(e.second);
  }
  return s;
}

} // namespace casecore
