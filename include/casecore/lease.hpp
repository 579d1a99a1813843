// casecore/lease.hpp — named leases with fencing tokens, kept in the database.
//
// Concept: a lease ("case:42:bulk-reindex") is held by one owner until it expires or is released.
// Every acquisition returns a fencing token that strictly increases per name and is never reset
// (release keeps the row and only expires it). Writes guarded by a lease call
// `lease::check(tx, name, token)` inside their own transaction: a holder whose lease expired while
// it was paused, or was taken over, gets lease_lost and its transaction rolls back.
//
// Guarantees (both backends, any isolation level, any lease size):
//   * At most one live holder: a lease is acquired only when it is free or expired; a live lease is
//     never re-acquired, not even with the holder's own owner string (extend it with renew(), which
//     needs the token). Two instances configured with one owner name still exclude each other.
//   * One clock, the database's (casecore_now_us()): PostgreSQL's clock_timestamp() on the server;
//     on SQLite the host kernel's CLOCK_REALTIME read by a direct system call (WAL needs every
//     process on one host, so that is the one clock they share). A client whose own clock is off,
//     or faked per process (libfaketime), changes no decision. A step of the database host's clock
//     moves every expiry by the step.
//   * Fencing: a guarded write that commits was checked under a token that was current and
//     unexpired when check() ran, and it commits before any newer token is issued. On PostgreSQL
//     check() takes FOR KEY SHARE on the lease row until the guarded transaction ends; a takeover
//     locks the expired row FOR UPDATE first and so waits for every open checked write. renew,
//     release and force_release do not wait for them. On SQLite the single writer gives the same.
//     Call check() last in the guarded transaction: the row stays share-locked from there to commit.
//   * Bounded waits: acquire(…, timeout) bounds every lock wait by the time left (PostgreSQL
//     lock_timeout, SQLite busy timeout); a row still locked when it runs out means "not acquired"
//     (errc::timeout). try_acquire(db, …) waits at most 100 ms for a lock. The wait for a pooled
//     connection is bounded by pool_options::acquire_timeout.
// An expired holder's open guarded transaction blocks takeovers until it ends: on PostgreSQL set
// idle_in_transaction_session_timeout (and TCP keepalives) so that a partitioned or stopped holder's
// transaction is ended by the server; until then acquirers get errc::timeout, never a second holder.
// No session-level advisory locks are used (safe behind transaction poolers).
// Step for tests (casecore/testing/steps.hpp): "lease.acquire.locked" — an acquirer holds an expired
// lease's row (SQLite: the write lock) and is about to take it over.
//
// Failure modes: invalid_argument for an empty or > 200-byte name or owner, a control character
// (C0, DEL, C1) or invalid UTF-8 in one, a non-positive TTL or a negative timeout (nothing written);
// lease_lost from renew / check when the token is stale or expired; errc::timeout from acquire()
// when the wait ran out. All functions are thread-safe.
//
// Example:
//   auto g = lease::acquire(db, "case:42:bulk-reindex", me, 30s, 10s);
//   db.write([&](transaction& tx) {
//     tx.exec("DELETE FROM search_index WHERE case_id = $1", 42);
//     lease::check(tx, g.name, g.token); // last: lease_lost rolls the delete back
//   });
//   g = lease::renew(db, g, 30s);
//   lease::release(db, g);
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

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

/// Take `name` for `owner` inside the caller's transaction when free or expired (nullopt when live).
/// Lock waits are bounded by the transaction's write_options::lock_timeout.
std::optional<grant> try_acquire(transaction& tx, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl);
/// Same, in its own transaction; waits at most 100 ms for a locked row (then nullopt).
std::optional<grant> try_acquire(database& db, std::string_view name, std::string_view owner,
                                 std::chrono::milliseconds ttl);
/// Wait up to `timeout` (polling with jittered backoff, every lock wait bounded by the time left)
/// for the lease; errc::timeout when it stays taken.
grant acquire(database& db, std::string_view name, std::string_view owner, std::chrono::milliseconds ttl,
              std::chrono::milliseconds timeout);

/// Extend a held lease to now + ttl; lease_lost when it expired or changed hands.
grant renew(database& db, const grant& held, std::chrono::milliseconds ttl);
/// Same, inside the caller's transaction (commits or rolls back with it).
grant renew(transaction& tx, const grant& held, std::chrono::milliseconds ttl);
/// Give the lease up now (keeps the token counter); false when it was no longer ours.
bool release(database& db, const grant& held);
/// Same, inside the caller's transaction (e.g. with the last guarded write).
bool release(transaction& tx, const grant& held);

/// Operator override: expire `name` whoever holds it (the token keeps counting). Returns the lease as
/// it was just before; not_found when it was never acquired. The old holder may still be running
/// and is only stopped where its writes are fenced by check().
info force_release(database& db, std::string_view name);

/// Fence: lease_lost unless `token` is the current, unexpired token of `name`; call it last in the
/// guarded write transaction (PostgreSQL: keeps a takeover waiting until that transaction ends);
/// invalid_argument in a read transaction (it once surfaced there as connection_lost on PostgreSQL).
void check(transaction& tx, std::string_view name, std::int64_t token);

/// The stored state of `name`, or nullopt when it was never acquired.
std::optional<info> inspect(database& db, std::string_view name);
/// Every lease whose name starts with `prefix` (all when empty), held or not, by name.
std::vector<info> list(database& db, std::string_view prefix = {});

} // namespace casecore::lease

CASECORE_API_END
