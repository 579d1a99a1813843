// tools/cli/dashboard.hpp — the pages and the /metrics endpoint of `casecore serve` (docs/operations.md).
//
// Concept: a server-rendered operator dashboard over one database, mounted on a cpp-httplib server
// (Debian's libcpp-httplib-dev; no HTTP parsing of our own). GET pages only read; the actions
// (retry, cancel, pause, resume) are POST forms.
// Security model:
//   - mutations need the operator token: the login form (POST /login) compares it constant-time and
//     sets an HttpOnly, SameSite=Strict session cookie signed with a per-process random secret
//     (HMAC-SHA256, 8 h); a restart ends every session. --read-only refuses every POST.
//   - every POST form carries a CSRF token (HMAC of the session under the same secret, compared
//     constant-time); a POST without a valid session and CSRF token, or with a foreign Origin, is
//     refused with 403 before anything is read or written.
//   - every value from the database or the request is escaped with html() (html.hpp).
//   - every response carries Content-Security-Policy (no scripts at all, frame-ancestors 'none'),
//     X-Content-Type-Options: nosniff, X-Frame-Options: DENY, Referrer-Policy: no-referrer and
//     Cache-Control: no-store; requests naming a Host other than the listening address are refused
//     (DNS rebinding) unless it listens on a wildcard address.
//   - the database URL is only ever shown masked (database::describe()).
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace httplib {
class Server;
}

namespace casecore::cli {

/// What `casecore serve` was started with.
struct serve_settings {
  std::string host = "127.0.0.1"; ///< listening address
  int port = 0;                   ///< listening port (after binding)
  bool read_only = false;         ///< refuse every POST
  std::string operator_token;     ///< the operator token (empty only when read_only)
  /// Login attempts (right or wrong) per client address per login_window, counted in the database
  /// with casecore::rate_limiter (every serve process of one database shares them); beyond it the
  /// login answers 429 with Retry-After without looking at the token. A successful login clears
  /// the address's count.
  int login_attempts = 10;
  std::chrono::milliseconds login_window{60000}; ///< the sliding window of login_attempts
};

/// Mount the dashboard's routes, security headers and error pages on `server`. `db` must be open
/// (for writing unless settings.read_only); the returned object owns the state the routes use and
/// must outlive the server's listening.
std::shared_ptr<void> mount_dashboard(httplib::Server& server, database db, const serve_settings& settings);

} // namespace casecore::cli
