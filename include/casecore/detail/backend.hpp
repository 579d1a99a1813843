// casecore/detail/backend.hpp — the adapter interface under its internal names. The interface is
// public and documented in casecore/backend.hpp; these aliases keep the library's own spelling.
#pragma once

#include <casecore/backend.hpp>

namespace casecore::detail {

using casecore::backend;
using casecore::connection;
using casecore::tx_mode;
using casecore::tx_settings;

} // namespace casecore::detail
