// Internal: the libpq connection parameters for a parsed postgresql:// URL.
// (Namespace `internal`, not `detail`: inside casecore::postgres a nested `detail` would hide
// casecore::detail.)
#pragma once

#include <casecore/url.hpp>

#include <string>
#include <vector>

namespace casecore::postgres::internal {

/// Which servers a connection string targets.
enum class target { primary, replicas };

/// libpq keyword='value' parameters for `url`: never the URL text, so libpq cannot split user,
/// password and host differently than casecore did. `primary`: the URL's hosts, and for a multi-host
/// URL target_session_attrs=read-write unless the URL says otherwise. `replicas`: the hosts of the
/// casecore `replicas` parameter with target_session_attrs=prefer-standby. connect_timeout defaults
/// to 5 s and application_name to "casecore".
std::string libpq_conninfo(const database_url& url, target which = target::primary);

/// `value` quoted for a libpq keyword/value string ('...' with \ and ' escaped).
std::string quote_conninfo(const std::string& value);

} // namespace casecore::postgres::internal
