// casecore/trigger.hpp — HMAC-SHA256 signed trigger requests (cron calls, webhooks).
//
// The sender signs method, path, body, a timestamp and a random nonce with a shared secret and sends
// the result in one header value: "t=<unix seconds>,n=<nonce>,s=<hex HMAC-SHA256>". The receiver
// recomputes the HMAC (constant-time comparison), refuses timestamps outside the replay window and
// remembers each accepted nonce until no verifier could accept its timestamp any more, so a captured
// request cannot be replayed. Signed text: "casecore-trigger-v1\n" METHOD "\n" path "\n" t "\n"
// nonce "\n" hex(SHA-256(body)). Nonces made by sign() come from the OS CSPRNG (detail/token.hpp):
// observing any number of them does not predict the next.
//
// Secrets: at least 32 bytes and at least 128 bits of estimated strength (secret_strength_bits:
// repeated runs, sequences such as "abcdefgh", keyboard rows and well-known defaults count for almost
// nothing), at least 8 distinct bytes and not a well-known default ("changeme", "your-secret-key",
// ...); anything else is refused with invalid_argument: there is no default and no way to run without
// one. new_secret() (and `casecore trigger new-secret`) makes one: 32 CSPRNG bytes as 64 hex digits.
//
// Clocks and replay across hosts: a request is fresh when |verifying host's clock − t| <= window.
// A nonce is kept until t + window + max_clock_skew. database_nonce_store prunes and takes over
// nonces by the DATABASE clock and refuses (errc::configuration) a verifying host whose clock is
// more than max_clock_skew away from the database's, so a nonce accepted once is never accepted again
// by any verifier of the deployment, whatever their clocks. window is capped at 24 h and
// max_clock_skew at 1 h (invalid_argument beyond), which also keeps now ± window from overflowing.
//
// Concurrency: signer and verifier are thread-safe. Nonce memory is a port: memory_nonce_store
// (bounded, one process) or database_nonce_store (casecore_trigger_nonces, shared by every process
// of a deployment). Failure modes: check() never throws for a bad request, it returns a verdict;
// verify() throws invalid_argument carrying the verdict's name; a nonce store that cannot be reached
// (or a host clock too far off the database's) makes check() propagate its casecore::error (fail
// closed).
//
// Example:
//   casecore::trigger::verifier v(secret, std::make_shared<casecore::trigger::database_nonce_store>(db));
//   if (v.check("POST", path, body, header) != casecore::trigger::verdict::ok) return 401;
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

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

/// Throw invalid_argument unless `secret` is 32..1024 bytes, >= 128 bits strong and not a known default.
void check_secret(std::string_view secret);

/// Estimated strength of `secret` in bits: a cheapest-parse estimate where each character costs
/// log2 of its character classes' size and repeats, sequences, keyboard runs and known weak words
/// cost only their description. A floor against patterned secrets, not a proof of randomness.
double secret_strength_bits(std::string_view secret);

/// A new secret: 32 bytes from the OS CSPRNG as 64 lowercase hex digits (256 bits).
std::string new_secret();

/// Longest accepted replay window (24 h).
inline constexpr std::chrono::seconds max_window{24 * 3600};
/// Largest accepted clock skew bound (1 h).
inline constexpr std::chrono::seconds max_clock_skew_limit{3600};

/// What a nonce store did with a nonce.
enum class remembered { stored, seen, full };

/// One authentic request's nonce, as a verifier hands it to a nonce store.
struct nonce_use {
  std::string_view nonce;           ///< the nonce (16..128 of [A-Za-z0-9_-])
  std::int64_t now_s = 0;           ///< the verifying host's clock (unix seconds)
  std::int64_t expires_at_s = 0;    ///< keep it at least until then: timestamp + window + max_clock_skew
  std::int64_t max_clock_skew_s = 0;///< the verifier's bound on |host clock − store clock|
};

/// Remembers nonces until they expire (a port; implement remember() to plug in another store).
class nonce_store {
public:
  virtual ~nonce_store() = default;
  /// Record `use.nonce` until `use.expires_at_s`: stored, seen (already recorded and live) or full
  /// (no room). Must be atomic per nonce, and must never forget a nonce before its expiry on the
  /// clock it prunes by; throws when unreachable. A store with its own clock (a database) must
  /// refuse a host whose clock is more than `use.max_clock_skew_s` away from it.
  virtual remembered remember(const nonce_use& use) = 0;
};

/// A bounded in-process nonce memory.
class memory_nonce_store final : public nonce_store {
public:
  /// Keep at most `capacity` live nonces.
  explicit memory_nonce_store(std::size_t capacity = 100000);
  /// Prunes by the host clock `use.now_s` (one process has one clock).
  remembered remember(const nonce_use& use) override;
  /// Live nonces recorded now.
  std::size_t size() const;

private:
  mutable std::mutex mutex_;
  std::size_t capacity_;
  std::map<std::string, std::int64_t, std::less<>> expiry_;
  std::multimap<std::int64_t, std::string> by_time_;
};

/// Nonces in the casecore_trigger_nonces table, shared by every process using `db` (migrated).
/// Prunes and takes over expired nonces by the database clock (casecore_now_us()); throws
/// errc::configuration when `use.now_s` is more than `use.max_clock_skew_s` off the database clock.
class database_nonce_store final : public nonce_store {
public:
  /// A store on `db`.
  explicit database_nonce_store(database db);
  remembered remember(const nonce_use& use) override;

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
  std::chrono::seconds window{300};         ///< accepted |now - timestamp| (1 s .. 24 h)
  /// Bound on how far any verifying host's clock may be from the nonce store's (0 .. 1 h): nonces are
  /// kept this much longer, and database_nonce_store refuses a host further off.
  std::chrono::seconds max_clock_skew{60};
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
  /// Check a request as of `now_s` (unix seconds, 1 .. 2^40; invalid_argument outside).
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

CASECORE_API_END
