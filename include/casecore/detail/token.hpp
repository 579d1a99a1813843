// casecore/detail/token.hpp — unique identifiers for owners, claims and staging folders.
#pragma once

#include <string>

namespace casecore::detail {

/// 128 random bits as 32 lowercase hex digits; thread-safe, distinct across processes and hosts.
std::string random_token();

} // namespace casecore::detail
