// casecore/rate_limiter.hpp — shared rate limits: at most N acquisitions per period P per key.
//
// Concept: a key ("api:acme", "endpoint:/cron") and a limit {N, P}. try_acquire() takes a token when
// fewer than N tokens of the key were taken in the last P, and otherwise says how long until one
// frees (retry_after). The state lives in the database, so every thread, process and host that opens
// the database shares one budget per key (an external API's quota, a trigger endpoint's throttle).
//
// How (a sliding-window log): the key keeps the times of its last N acquisitions in a ring of N
// slots, oldest first from a cursor. An acquisition locks the key's row, reads the database clock,
// and succeeds only when the oldest time is at least P old; it then overwrites that slot with now.
// A fixed window ("N per calendar second") lets 2N through across a boundary and a token bucket or
// GCRA allows bursts above N in some window; the log does neither.
//
// Guarantee (both backends): for the acquisitions made under one limit, no half-open window
// [t, t + P) of the database clock holds more than N of them, whichever threads, processes or hosts
// made them. Times are the database's (casecore_now_us(): PostgreSQL's clock_timestamp() on the
// server; on SQLite the host kernel's CLOCK_REALTIME), read after the key's row lock is held, and
// never earlier than the key's previous acquisition (a clock that steps back only makes the limiter
// stricter until it catches up). acquisition::at reports the time used.
// Settings it holds under:
//   * PostgreSQL, any isolation level. The calls on `database&` run in their own READ COMMITTED
//     transaction. Inside a caller's transaction at REPEATABLE READ or SERIALIZABLE (explicit, or a
//     server's default_transaction_isolation) a concurrent acquisition of the same key makes this
//     one fail with a serialization error (every acquisition updates the key's row), which the unit
//     of work retries: never two tokens from one stale snapshot.
//   * PgBouncer in transaction mode: only row locks held by the transaction; no session state, no
//     advisory locks.
//   * SQLite: the single writer (BEGIN IMMEDIATE) serialises acquisitions; every process on one host.
// Cost: a token held by a caller's transaction holds the key's row lock until that transaction ends,
// so do the acquisition last (or use the `database&` overloads) to keep a hot key's lock short.
// A token is spent when the acquiring transaction commits; a rollback gives it back.
//
// Changing a key's limit. Every call passes its limit; give all callers of one key the same one.
//   * P applies per call: a call with a shorter P sees slots free sooner, a longer P later.
//   * N is the ring's size and follows the call: a call with another N re-lays the ring, keeping the
//     newest min(old N, new N) times. The bound above then holds for the new N from the change on
//     (the times kept count against it; older ones were already at least P old under the old limit).
// Keys never expire on their own: forget(db, key) deletes one (its next acquisition starts empty).
//
// Failure modes: invalid_argument (nothing written) for an empty or over-500-byte key or one with a
// control character or invalid UTF-8, N outside 1..100000, P outside 1 ms..366 days, a negative
// timeout, or a read transaction; errc::timeout from acquire() when no token can be had before the
// deadline (at once when the next one frees only after it); busy/backend errors as for any write.
// Thread-safe.
//
// Example (a host throttles its trigger endpoint in the same transaction as the write it guards):
//   const rate_limiter::limit per_minute{10, std::chrono::minutes(1)};
//   db.write([&](transaction& tx) {
//     auto a = rate_limiter::try_acquire(tx, "endpoint:/cron", per_minute);
//     if (!a.acquired) throw too_many_requests(a.retry_after);   // rolls back, nothing spent
//     record_trigger(tx);
//   });
//   rate_limiter::acquire(db, "api:acme", {100, std::chrono::seconds(1)}, std::chrono::seconds(5));
#pragma once

/// @file
/// Shared rate limits kept in the database (guarantee and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db) -->
/// @code
/// const casecore::rate_limiter::limit per_second{100, std::chrono::seconds(1)};
/// auto a = casecore::rate_limiter::try_acquire(db, "api:acme", per_second);
/// if (!a.acquired) { /* come back after a.retry_after */ }
/// @endcode

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::rate_limiter {

/// At most `count` acquisitions per `period`.
struct limit {
  std::int64_t count = 1;                  ///< N: tokens per period (1..100000)
  std::chrono::milliseconds period{1000};  ///< P: the sliding window (1 ms .. 366 days)
};

/// The answer of an acquisition attempt.
struct acquisition {
  bool acquired = false;                    ///< a token was taken (spent when the transaction commits)
  std::chrono::microseconds retry_after{0}; ///< not acquired: how long until the oldest token frees (> 0)
  micros at = 0;                            ///< the database-clock time of the decision (the token's time)
};

/// The stored state of one key.
struct info {
  std::string key;          ///< the key
  std::int64_t count = 0;   ///< N of the last call (ring size)
  micros period_us = 0;     ///< P of the last call, in microseconds
  std::vector<micros> log;  ///< times of the last (up to N) acquisitions, oldest first
  micros now = 0;           ///< the database clock when read
};

/// Take a token of `key` inside the caller's write transaction (see "Settings" above). Lock waits
/// are bounded by the transaction's write_options::lock_timeout.
acquisition try_acquire(transaction& tx, std::string_view key, const limit& l);
/// Same, in its own short READ COMMITTED transaction.
acquisition try_acquire(database& db, std::string_view key, const limit& l);
/// Wait (sleeping retry_after, jittered) until a token is taken; errc::timeout when none can be had
/// within `timeout` (raised at once when the next token frees only after the deadline).
acquisition acquire(database& db, std::string_view key, const limit& l, std::chrono::milliseconds timeout);

/// The stored state of `key`, or nullopt when it was never used (or forgotten).
std::optional<info> inspect(database& db, std::string_view key);
/// Delete `key`'s log: its next acquisition starts with all N tokens free. False when absent.
bool forget(database& db, std::string_view key);

} // namespace casecore::rate_limiter

CASECORE_API_END
