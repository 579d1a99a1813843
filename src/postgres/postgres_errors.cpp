// The PostgreSQL adapter's one mapping table: SQLSTATE -> casecore::errc.
#include <casecore/postgres/postgres.hpp>

#include <array>
#include <utility>

namespace casecore::postgres {

// A failed connect: the server or network may come back (backend_unavailable, waited for within the
// reconnect budget), or the server refused who we are or what we asked (configuration, never).
errc classify_connect_failure(std::string_view msg) noexcept {
  const auto has = [&](std::string_view part) { return msg.find(part) != std::string_view::npos; };
  for (std::string_view transient :
       {"the database system is starting up", "the database system is shutting down", "the database system is in recovery",
        "not yet accepting connections", "not accepting connections", "too many clients", "connection slots are reserved",
        "cannot connect now",
        // The server ended the new session while starting or stopping (57P01 admin shutdown during a
        // restart, a crash of another backend, postmaster exit): it may be back in a moment. Seen
        // as a non-retryable configuration error by the torture run's server restart under TSan.
        "terminating connection due to"})
    if (has(transient)) return errc::backend_unavailable;
  if (has("FATAL:") || has("invalid connection option") || has("invalid port number") ||
      has("invalid sslmode") || has("invalid target_session_attrs") || has("invalid integer value"))
    return errc::configuration;
  return errc::backend_unavailable; // refused, timed out, reset, standby only, DNS: may come back
}

errc map_sqlstate(std::string_view s) noexcept {
  static constexpr std::pair<std::string_view, errc> exact[] = {
      {"40001", errc::serialization_failure},
      {"40P01", errc::deadlock},
      {"40003", errc::outcome_unknown},      // statement_completion_unknown
      {"55P03", errc::busy},                 // lock_not_available (NOWAIT / lock_timeout)
      {"55006", errc::busy},                 // object_in_use
      {"23505", errc::already_exists},       // unique_violation
      {"23P01", errc::already_exists},       // exclusion_violation
      {"23503", errc::constraint_violation}, // foreign_key_violation
      {"23502", errc::constraint_violation}, // not_null_violation
      {"23514", errc::constraint_violation}, // check_violation
      {"57014", errc::timeout},              // query_canceled (statement_timeout)
      {"57P01", errc::connection_lost},      // admin_shutdown
      {"57P02", errc::connection_lost},      // crash_shutdown
      {"57P03", errc::connection_lost},      // cannot_connect_now (starting up)
      {"53300", errc::busy},                 // too_many_connections
      {"25P02", errc::backend_error},        // in_failed_sql_transaction
      {"25006", errc::connection_lost},      // read_only_sql_transaction: a standby / demoted primary; reconnect
      {"25P03", errc::connection_lost},      // idle_in_transaction_session_timeout ended the session
      {"57P04", errc::configuration},        // database_dropped
      {"26000", errc::configuration},        // invalid_sql_statement_name: a transaction pooler (never retried)
      {"42P05", errc::configuration},        // duplicate_prepared_statement: a transaction pooler (never retried)
      {"3D000", errc::configuration},        // invalid_catalog_name (no such database)
      {"28P01", errc::configuration},        // invalid_password
      {"28000", errc::configuration},        // invalid_authorization_specification (no such role, pg_hba)
  };
  for (const auto& [code, cause] : exact)
    if (code == s) return cause;
  if (s.size() == 5) {
    const auto cls = s.substr(0, 2);
    if (cls == "08") return errc::connection_lost;   // connection exceptions
    if (cls == "22") return errc::invalid_argument;  // data exceptions (bad input value)
    if (cls == "23") return errc::constraint_violation;
    if (cls == "40") return errc::serialization_failure;
    if (cls == "53") return errc::busy;              // insufficient resources
  }
  return errc::backend_error;
}

} // namespace casecore::postgres
