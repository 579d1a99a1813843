// casecore/lease.hpp — named leases with fencing tokens, kept in the database.
//
// A lease ("case:42:bulk-reindex") is held by one owner until it expires or is released. Every
// successful acquisition returns a fencing token that strictly increases per name and is never
// reset (release keeps the row and only expires it). Writes guarded by a lease call
// `lease::check(tx, name, token)` inside their own transaction: a holder whose lease expired while
// it was paused, or was taken over, gets lease_lost and its transaction rolls back.
// Concurrency: acquisition is one upsert decided by the database under its row lock, with the
// database clock (casecore_now_us) as the only clock, so it is exact across threads, processes and
// (on PostgreSQL) hosts. No session-level advisory locks are used.
// Failure modes: invalid_argument for an empty / oversized name or owner or a non-positive TTL;
// lease_lost from renew / check when the token is stale or expired; errc::timeout from acquire()
// when the wait ran out. All functions are thread-safe.
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace casecore::lease {

/// A lease held by the caller: present the token with every guarded write.
struct grant {
  std::string name;       ///< lease name
  std::string owner;      ///< who holds it
  std::int64_t token = 0; ///< fencing token, strictly increasing per name
  micros expires_at = 0;  ///< database-clock expiry
};

/// The state of one lease as stored.
struct info {
  std::string name;       ///< lease name
  std::string owner;      ///< last holder
  std::int64_t token = 0; ///< token of the last acquisition
  micros expires_at = 0;  ///< expiry (0 after release)
  micros acquired_at = 0; ///< when the last acquisition happened
  bool held = false;      ///< true while not expired (database clock)
};

/// Take `name` for `owner` inside the caller's transaction when free, expired or already ours.
std::optional<grant> try_acquire(transaction& tx, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl);
/// Same, in its own transaction.
std::optional<grant> try_acquire(database& db, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl);
/// Wait up to `timeout` (polling with jittered backoff) for the lease; errc::timeout when it stays taken.
grant acquire(database& db, std::string_view name, std::string_view owner, std::chrono::milliseconds ttl,
              std::chrono::milliseconds timeout);

/// Extend a held lease to now + ttl; lease_lost when it expired or changed hands.
grant renew(database& db, const grant& held, std::chrono::milliseconds ttl);
/// Give the lease up now (keeps the token counter); false when it was no longer ours.
bool release(database& db, const grant& held);

/// Operator override: expire `name` whoever holds it (the token keeps counting). Returns the lease as
/// it was just before; not_found when it was never acquired. The old holder may still be running
/// and is only stopped where its writes are fenced by check().
info force_release(database& db, std::string_view name);

/// Fence: lease_lost unless `token` is the current, unexpired token of `name` (call in the guarded write).
void check(transaction& tx, std::string_view name, std::int64_t token);

/// The stored state of `name`, or nullopt when it was never acquired.
std::optional<info> inspect(database& db, std::string_view name);
/// Every lease whose name starts with `prefix` (all when empty), held or not, by name.
std::vector<info> list(database& db, std::string_view prefix = {});

} // namespace casecore::lease
