// Placeholder: the feature's owner replaces this file.
#include <casecore/migration.hpp>

namespace casecore::detail {
std::vector<migration> repository_migrations() { return {}; }
} // namespace casecore::detail
