#include <casecore/error.hpp>

#include <cstdlib>

namespace casecore {

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::bad_url: return "bad_url";
    case errc::not_found: return "not_found";
    case errc::already_exists: return "already_exists";
    case errc::constraint_violation: return "constraint_violation";
    case errc::version_conflict: return "version_conflict";
    case errc::invalid_transition: return "invalid_transition";
    case errc::lease_lost: return "lease_lost";
    case errc::busy: return "busy";
    case errc::serialization_failure: return "serialization_failure";
    case errc::deadlock: return "deadlock";
    case errc::connection_lost: return "connection_lost";
    case errc::outcome_unknown: return "outcome_unknown";
    case errc::pool_timeout: return "pool_timeout";
    case errc::backend_unavailable: return "backend_unavailable";
    case errc::configuration: return "configuration";
    case errc::timeout: return "timeout";
    case errc::unsupported: return "unsupported";
    case errc::flight_failed: return "flight_failed";
    case errc::backend_error: return "backend_error";
    case errc::internal: return "internal";
  }
  return "unknown";
}

bool is_retryable(errc code) noexcept {
  switch (code) {
    case errc::busy:
    case errc::serialization_failure:
    case errc::deadlock:
    case errc::connection_lost:
    case errc::pool_timeout:
      return true;
    default:
      return false;
  }
}

error::error(errc code, std::string message)
    : std::runtime_error(std::string(to_string(code)) + ": " + message), code_(code) {}

bool error::conflict() const noexcept {
  return code_ == errc::version_conflict || code_ == errc::invalid_transition || code_ == errc::lease_lost;
}

version_conflict::version_conflict(std::string message, std::int64_t expected, std::int64_t current,
                                   std::string updated_by, std::int64_t updated_at_us)
    : error(errc::version_conflict, std::move(message)), expected_(expected), current_(current),
      updated_by_(std::move(updated_by)), updated_at_us_(updated_at_us) {}

void raise(errc code, std::string message) { raise(code, std::move(message), std::string()); }

void raise(errc code, std::string message, std::string native_code) {
  const auto with_native = [&native_code](auto e) { // throws e with the native code set
    static_cast<error&>(e).native_ = std::move(native_code);
    throw e;
  };
  switch (code) {
    case errc::invalid_argument: with_native(invalid_argument(std::move(message))); break;
    case errc::bad_url: with_native(bad_url(std::move(message))); break;
    case errc::not_found: with_native(not_found(std::move(message))); break;
    case errc::already_exists: with_native(already_exists(std::move(message))); break;
    case errc::version_conflict: with_native(version_conflict(std::move(message), 0, 0, "", 0)); break;
    case errc::invalid_transition: with_native(invalid_transition(std::move(message))); break;
    case errc::lease_lost: with_native(lease_lost(std::move(message))); break;
    case errc::backend_unavailable: with_native(backend_unavailable(std::move(message))); break;
    case errc::outcome_unknown: with_native(outcome_unknown(std::move(message))); break;
    default: with_native(error(code, std::move(message))); break;
  }
  std::abort(); // every case throws
}

} // namespace casecore
