// casecore/trigger.hpp — HMAC-SHA256 signed trigger requests (cron calls, webhooks).
//
// The sender signs method, path, body, a timestamp and a random nonce with a shared secret and sends
// the result in one header value: "t=<unix seconds>,n=<nonce>,s=<hex HMAC-SHA256>". The receiver
// recomputes the HMAC (constant-time comparison), refuses timestamps outside the replay window and
// remembers each accepted nonce until its timestamp leaves the window, so a captured request cannot
// be replayed. Signed text: "casecore-trigger-v1\n" METHOD "\n" path "\n" t "\n" nonce "\n"
// hex(SHA-256(body)).
//
// Secrets: an empty secret, one shorter than 32 bytes, one with fewer than 8 distinct bytes, or a
// well-known default ("changeme", "your-secret-key", "secret" repeated, ...) is refused with
// invalid_argument: there is no default and no way to run without one.
//
// Concurrency: signer and verifier are thread-safe. Nonce memory is a port: memory_nonce_store
// (bounded, one process) or database_nonce_store (casecore_trigger_nonces, shared by every process
// of a deployment). Failure modes: check() never throws for a bad request, it returns a verdict;
// verify() throws invalid_argument carrying the verdict's name; a nonce store that cannot be reached
// makes check() propagate its casecore::error (fail closed).
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace casecore::trigger {

/// Outcome of a verification.
enum class verdict {
  ok,               ///< signature valid, fresh, nonce unseen
  malformed,        ///< header cannot be parsed
  bad_signature,    ///< HMAC mismatch (tampered request or wrong key)
  expired,          ///< timestamp outside the replay window (too old or too far ahead)
  replayed,         ///< nonce already used
  nonce_memory_full ///< the nonce store is full of live nonces: refused rather than forgetting one
};

/// "ok", "malformed", "bad_signature", ...
std::string_view to_string(verdict v) noexcept;

/// Throw invalid_argument unless `secret` is long and not a known default.
void check_secret(std::string_view secret);

/// What a nonce store did with a nonce.
enum class remembered { stored, seen, full };

/// Remembers nonces until they expire (a port; implement remember() to plug in another store).
class nonce_store {
public:
  virtual ~nonce_store() = default;
  /// Record `nonce` until `expires_at_s` (unix seconds, `now_s` is now): stored, seen (already
  /// recorded and live) or full (no room). Must be atomic per nonce; throws when unreachable.
  virtual remembered remember(std::string_view nonce, std::int64_t now_s, std::int64_t expires_at_s) = 0;
};

/// A bounded in-process nonce memory.
class memory_nonce_store final : public nonce_store {
public:
  /// Keep at most `capacity` live nonces.
  explicit memory_nonce_store(std::size_t capacity = 100000);
  remembered remember(std::string_view nonce, std::int64_t now_s, std::int64_t expires_at_s) override;
  /// Live nonces recorded now.
  std::size_t size() const;

private:
  mutable std::mutex mutex_;
  std::size_t capacity_;
  std::map<std::string, std::int64_t, std::less<>> expiry_;
  std::multimap<std::int64_t, std::string> by_time_;
};

/// Nonces in the casecore_trigger_nonces table, shared by every process using `db` (migrated).
class database_nonce_store final : public nonce_store {
public:
  /// A store on `db`.
  explicit database_nonce_store(database db);
  remembered remember(std::string_view nonce, std::int64_t now_s, std::int64_t expires_at_s) override;

private:
  database db_;
};

/// Signs requests.
class signer {
public:
  /// A signer with `secret` (invalid_argument when weak, see check_secret).
  explicit signer(std::string secret);
  /// The header value for a request with this timestamp (unix seconds) and nonce.
  std::string sign(std::string_view method, std::string_view path, std::string_view body, std::int64_t timestamp_s,
                   std::string_view nonce) const;
  /// The header value for a request sent now with a fresh random nonce.
  std::string sign(std::string_view method, std::string_view path, std::string_view body) const;

private:
  std::string secret_;
};

/// Settings of a verifier.
struct verify_options {
  std::chrono::seconds window{300};  ///< accepted |now - timestamp|
};

/// Verifies signed requests.
class verifier {
public:
  /// A verifier with `secret` and its own memory_nonce_store.
  explicit verifier(std::string secret, verify_options options = {});
  /// A verifier remembering nonces in `store` (e.g. database_nonce_store).
  verifier(std::string secret, std::shared_ptr<nonce_store> store, verify_options options = {});

  /// Check a request received now.
  verdict check(std::string_view method, std::string_view path, std::string_view body, std::string_view header);
  /// Check a request as of `now_s` (unix seconds).
  verdict check(std::string_view method, std::string_view path, std::string_view body, std::string_view header,
                std::int64_t now_s);
  /// check(), throwing invalid_argument ("trigger rejected: <verdict>") unless ok.
  void verify(std::string_view method, std::string_view path, std::string_view body, std::string_view header);

private:
  std::string secret_;
  std::shared_ptr<nonce_store> store_;
  verify_options options_;
};

} // namespace casecore::trigger
