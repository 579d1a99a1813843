// casecore/single_flight.hpp — one computation per key, shared by every concurrent caller.
//
// single_flight<K, V>: callers asking for the same key at the same time share one computation (the
// first caller, the "leader", runs it; the others, "followers", wait for it). Every caller gets the
// leader's value, or the leader's exception rethrown. A leader that throws never hangs its followers:
// the exception is stored in the shared state before the call ends. Once a computation finished, the
// next caller starts a new one (single_flight deduplicates, it does not cache).
//
// versioned_cache<K, V>: single_flight plus a bounded result cache keyed by (key, source version): a
// report is regenerated only when the version of its source changed. Invalidate after a write with
// invalidate_after_commit(tx, key): the entry is dropped once the transaction commits, never when it
// rolls back. A computation that overlaps an invalidation is returned to its callers but not cached.
//
// db_single_flight<V>: the same across processes. A claim row in casecore_flights (expiring on the
// database clock, with an owner id and a generation) lets one process compute a key while the others
// poll for the result the leader stored (the host's `lookup`), for its failure, or for the claim to end.
// Guarantees (both backends, any claim_ttl):
//   * the leader renews its claim every claim_ttl / 3 while computing, so a computation longer than
//     claim_ttl is not started a second time while its process runs and reaches the database;
//   * the result is stored only in a transaction that first ends the claim conditionally on its owner
//     and generation (and on not having expired), so a leader that lost its claim — paused past
//     claim_ttl, partitioned, taken over — never stores a stale result (it gets lease_lost);
//   * a leader whose compute or store throws records the failure on the claim row; processes that were
//     waiting for that claim get errc::flight_failed with its message instead of computing again.
//     The next caller after that starts afresh (failures are not cached).
// Limits: computations are deduplicated, not fenced: a leader that lost its claim may still be
// computing while a new leader computes (only one of them stores). On SQLite a renewal waits for the
// write lock like any write, so a compute that holds a write transaction longer than claim_ttl can
// lose its claim.
//
// Thread safety: all members of all three classes are thread-safe. Failure modes: compute's and
// store's exceptions propagate unchanged to the leader's callers; other processes get
// errc::flight_failed; db_single_flight raises errc::timeout when neither a result nor the claim's end
// appeared within max_wait, lease_lost when the leader's claim was lost before its store, and
// invalid_argument for a bad key or options (before any write).
//
// Example:
//   casecore::db_single_flight<std::string> flights(db);
//   auto pdf = flights.run("report:42:v7",
//       [&]() -> std::optional<std::string> { return find_report(db, 42, 7); },  // stored by anyone
//       [&] { return render_report(42, 7); },                                     // slow, no writes
//       [&](casecore::transaction& tx, const std::string& p) { save_report(tx, 42, 7, p); });
#pragma once

#include <casecore/database.hpp>
#include <casecore/transaction.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Figures of a single_flight (or versioned_cache) since construction.
struct flight_stats {
  std::uint64_t computations = 0; ///< times a leader ran the computation
  std::uint64_t shared = 0;       ///< callers that waited for another caller's computation
  std::uint64_t cache_hits = 0;   ///< callers served from the result cache (versioned_cache only)
};

/// Deduplicates concurrent computations of the same key.
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>> class single_flight {
public:
  single_flight() = default;
  single_flight(const single_flight&) = delete;
  single_flight& operator=(const single_flight&) = delete;

  /// Return compute()'s value; concurrent callers with an equal key share one call of compute.
  template <class F> V run(const K& key, F&& compute) {
    std::promise<V> promise;
    {
      std::unique_lock lock(mutex_);
      if (auto it = calls_.find(key); it != calls_.end()) {
        auto shared = it->second;
        ++stats_.shared;
        lock.unlock();
        return shared.get(); // the leader's value, or its exception rethrown
      }
      calls_.emplace(key, promise.get_future().share());
      ++stats_.computations;
    }
    // Leader. Forget the key before publishing the outcome so a caller that arrives afterwards starts
    // afresh instead of reading a finished result; followers already hold the shared future.
    try {
      V result = compute();
      forget(key);
      promise.set_value(result);
      return result;
    } catch (...) {
      forget(key);
      promise.set_exception(std::current_exception());
      throw;
    }
  }

  /// Computations running now.
  std::size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return calls_.size();
  }
  /// Figures since construction.
  flight_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

private:
  void forget(const K& key) noexcept {
    std::lock_guard lock(mutex_);
    calls_.erase(key);
  }

  mutable std::mutex mutex_;
  std::unordered_map<K, std::shared_future<V>, Hash, Eq> calls_;
  flight_stats stats_;
};

/// A single_flight whose results are cached per (key, source version), with commit-bound invalidation.
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>> class versioned_cache {
public:
  /// A cache that keeps at most `capacity` results (oldest stored evicted first).
  explicit versioned_cache(std::size_t capacity = 1024) : state_(std::make_shared<state>()) {
    if (capacity == 0) raise(errc::invalid_argument, "versioned_cache capacity must be positive");
    state_->capacity = capacity;
  }

  /// The cached value of `key` at `version`, else compute() shared by concurrent callers and cached.
  template <class F> V get(const K& key, std::int64_t version, F&& compute) {
    std::uint64_t epoch = 0;
    {
      std::lock_guard lock(state_->mutex);
      if (auto it = state_->entries.find(key); it != state_->entries.end() && it->second.version == version) {
        ++state_->hits;
        return it->second.value;
      }
      epoch = state_->epoch;
    }
    return flights_.run(flight_key{key, version}, [&]() -> V {
      V result = compute();
      store(key, version, result, epoch);
      return result;
    });
  }

  /// Drop the cached result of `key` now.
  void invalidate(const K& key) { state_->invalidate(key); }

  /// Drop the cached result of `key` once `tx` commits (nothing happens if it rolls back).
  void invalidate_after_commit(transaction& tx, const K& key) {
    // A weak reference: a cache destroyed before the commit is simply not touched.
    std::weak_ptr<state> weak = state_;
    tx.after_commit([weak, key] {
      if (auto s = weak.lock()) s->invalidate(key);
    });
  }

  /// Drop every cached result.
  void clear() {
    std::lock_guard lock(state_->mutex);
    ++state_->epoch;
    state_->entries.clear();
    state_->order.clear();
  }

  /// Results cached now.
  std::size_t size() const {
    std::lock_guard lock(state_->mutex);
    return state_->entries.size();
  }
  /// Figures since construction.
  flight_stats stats() const {
    auto s = flights_.stats();
    std::lock_guard lock(state_->mutex);
    s.cache_hits = state_->hits;
    return s;
  }

private:
  struct flight_key {
    K key;
    std::int64_t version;
    friend bool operator==(const flight_key& a, const flight_key& b) { return Eq{}(a.key, b.key) && a.version == b.version; }
  };
  struct flight_hash {
    std::size_t operator()(const flight_key& k) const noexcept {
      return Hash{}(k.key) ^ (std::hash<std::int64_t>{}(k.version) * 0x9e3779b97f4a7c15ULL);
    }
  };
  struct entry {
    std::int64_t version;
    V value;
    typename std::list<K>::iterator order;
  };
  struct state {
    mutable std::mutex mutex;
    std::size_t capacity = 0;
    std::uint64_t epoch = 0; // bumped by every invalidation: results computed across one are not cached
    std::uint64_t hits = 0;
    std::unordered_map<K, entry, Hash, Eq> entries;
    std::list<K> order; // insertion order, oldest first

    void invalidate(const K& key) {
      std::lock_guard lock(mutex);
      ++epoch;
      if (auto it = entries.find(key); it != entries.end()) {
        order.erase(it->second.order);
        entries.erase(it);
      }
    }
  };

  void store(const K& key, std::int64_t version, const V& result, std::uint64_t epoch) {
    auto& s = *state_;
    std::lock_guard lock(s.mutex);
    if (s.epoch != epoch) return;
    if (auto it = s.entries.find(key); it != s.entries.end()) {
      if (it->second.version > version) return; // never replace a newer result with an older one
      s.order.erase(it->second.order);
      s.entries.erase(it);
    }
    while (s.entries.size() >= s.capacity && !s.order.empty()) {
      s.entries.erase(s.order.front());
      s.order.pop_front();
    }
    s.order.push_back(key);
    s.entries.emplace(key, entry{version, result, std::prev(s.order.end())});
  }

  std::shared_ptr<state> state_;
  single_flight<flight_key, V, flight_hash> flights_;
};

/// Settings of db_single_flight.
struct db_flight_options {
  /// How long a claim lives without renewal. The leader renews it every claim_ttl / 3 while it
  /// computes, so it only runs out when the leader's process stops, is paused or loses the database.
  std::chrono::milliseconds claim_ttl{60000};
  std::chrono::milliseconds max_wait{120000};     ///< how long a follower waits before errc::timeout
  std::chrono::milliseconds poll_min{5};          ///< first poll interval of a waiting follower
  std::chrono::milliseconds poll_max{500};        ///< poll interval cap (doubles up to it)
};

namespace detail {
/// A claim this process holds on a flight key.
struct flight_claim {
  std::string key;             ///< flight key
  std::string owner;           ///< this attempt's random owner id
  std::int64_t generation = 0; ///< increases with every claim of the key while its row exists
};
/// The claim row of a key as another process sees it.
struct flight_state {
  bool exists = false;               ///< a row exists
  bool live = false;                 ///< its claim has not expired (database clock)
  std::string owner;                 ///< current or last claimant
  std::int64_t generation = 0;       ///< its generation
  std::int64_t failed_generation = 0;///< the last generation whose computation failed (0: none)
  std::string failure;               ///< that failure's message
};
/// Validate a flight key and options (invalid_argument).
void check_flight(std::string_view key, const db_flight_options& options);
/// Take the claim on `key` for `owner` when free or expired; nullopt while another claim is live.
std::optional<flight_claim> flight_try_claim(database& db, std::string_view key, std::string_view owner,
                                             std::chrono::milliseconds ttl);
/// The claim row of `key` now.
flight_state flight_read(database& db, std::string_view key);
/// In the store transaction: end `claim` as done; lease_lost (the store rolls back) when it is no
/// longer held (expired on the database clock, or taken over).
void flight_finish(transaction& tx, const flight_claim& claim);
/// Record that `claim`'s computation failed with `message` and end the claim (no-op if not ours).
void flight_fail(database& db, const flight_claim& claim, std::string_view message) noexcept;
/// Give `claim` up without a result (no-op if not ours).
void flight_release(database& db, const flight_claim& claim) noexcept;
/// A fresh claim owner id.
std::string flight_owner();
/// Renews a claim every ttl / 3 on its own thread until destroyed or until the claim is found lost.
class flight_renewer {
public:
  /// Start renewing `claim` on `db`.
  flight_renewer(database db, flight_claim claim, std::chrono::milliseconds ttl);
  /// Stop renewing (joins the thread).
  ~flight_renewer();
  flight_renewer(const flight_renewer&) = delete;
  flight_renewer& operator=(const flight_renewer&) = delete;

private:
  struct state;
  std::unique_ptr<state> state_;
};
} // namespace detail

/// Single-flight across processes: one process computes a key while the others wait for its result.
template <class V> class db_single_flight {
public:
  /// Flights on `db` (which must be migrated).
  explicit db_single_flight(database db, db_flight_options options = {}) : db_(std::move(db)), options_(options) {
    detail::check_flight("x", options_);
  }

  /// The result of `key`: lookup()'s if it has one, else compute()'s, run by one process at a time.
  /// `lookup` reads a result a previous computation stored (e.g. a report row for the current
  /// version); `compute` produces it without storing it; `store(tx, value)` stores it and runs in a
  /// transaction that first proves this process still holds the claim, so a leader that lost its
  /// claim (paused past claim_ttl, taken over) never stores: it gets lease_lost instead. Waiting
  /// processes get the value through `lookup`, or errc::flight_failed when the leader's compute or
  /// store threw. Threads of this process share one attempt.
  V run(std::string_view key, const std::function<std::optional<V>()>& lookup, const std::function<V()>& compute,
        const std::function<void(transaction&, const V&)>& store) {
    detail::check_flight(key, options_);
    return local_.run(std::string(key), [&] { return attempt(key, lookup, compute, store); });
  }

  /// Figures of the in-process part.
  flight_stats stats() const { return local_.stats(); }

private:
  V attempt(std::string_view key, const std::function<std::optional<V>()>& lookup, const std::function<V()>& compute,
            const std::function<void(transaction&, const V&)>& store) {
    const auto deadline = std::chrono::steady_clock::now() + options_.max_wait;
    auto pause = options_.poll_min;
    const std::string owner = detail::flight_owner();
    std::int64_t following = 0; // generation of the claim this process waits for (0: none yet)
    for (;;) {
      if (auto found = lookup()) return std::move(*found);
      if (auto claim = detail::flight_try_claim(db_, key, owner, options_.claim_ttl)) return lead(*claim, lookup, compute, store);
      // Another process computes: wait for its result, its failure, or the end of its claim (expired
      // after a crash, or given up), then look again and possibly claim ourselves.
      for (auto st = detail::flight_read(db_, key);; st = detail::flight_read(db_, key)) {
        // Follow the claim seen first; a lower generation means the row was deleted (a success) and
        // a new one started, which is then the claim to follow.
        if (st.exists && (following == 0 || st.generation < following)) following = st.generation;
        if (st.exists && following > 0 && st.generation >= following && st.failed_generation >= following)
          raise(errc::flight_failed, "single-flight '" + std::string(key) + "': the computation in another process failed: " +
                                         st.failure);
        if (!st.exists || !st.live) break;
        if (std::chrono::steady_clock::now() >= deadline)
          raise(errc::timeout, "single-flight: no result for '" + std::string(key) + "' within max_wait");
        std::this_thread::sleep_for(pause);
        pause = std::min(options_.poll_max, pause * 2);
        if (auto found = lookup()) return std::move(*found);
      }
    }
  }

  V lead(const detail::flight_claim& claim, const std::function<std::optional<V>()>& lookup,
         const std::function<V()>& compute, const std::function<void(transaction&, const V&)>& store) {
    detail::flight_renewer renewer(db_, claim, options_.claim_ttl);
    try {
      // The previous holder may have stored its result between our lookup and our claim.
      if (auto again = lookup()) {
        detail::flight_release(db_, claim);
        return std::move(*again);
      }
      V result = compute();
      db_.write([&](transaction& tx) {
        detail::flight_finish(tx, claim); // first: holds the claim row until the store commits
        store(tx, result);
      });
      return result;
    } catch (const lease_lost&) {
      // The claim was lost before the store (or the host's store was fenced off): not a failure of
      // the computation; give the claim up if it is still ours so that another process can go on.
      detail::flight_release(db_, claim);
      throw;
    } catch (const std::exception& e) {
      detail::flight_fail(db_, claim, e.what());
      throw;
    } catch (...) {
      detail::flight_fail(db_, claim, "an exception that is not a std::exception");
      throw;
    }
  }

  database db_;
  db_flight_options options_;
  single_flight<std::string, V> local_;
};

} // namespace casecore

CASECORE_API_END
