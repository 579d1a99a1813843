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
// db_single_flight<V>: the same across processes. A claim row in casecore_flights (expiring, taken
// with INSERT ... ON CONFLICT DO UPDATE ... WHERE expired) lets one process compute a key while the
// others poll for the result the winner stored (the host's `lookup`) or for the claim to expire.
//
// Thread safety: all members of all three classes are thread-safe. Failure modes: compute's
// exceptions propagate unchanged; db_single_flight raises errc::timeout when neither a result nor the
// claim appeared within max_wait, and invalid_argument for a bad key or options (before any write).
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
  std::chrono::milliseconds claim_ttl{60000};     ///< how long a claim protects a computation
  std::chrono::milliseconds max_wait{120000};     ///< how long a loser waits before errc::timeout
  std::chrono::milliseconds poll_min{5};          ///< first poll interval of a waiting loser
  std::chrono::milliseconds poll_max{500};        ///< poll interval cap (doubles up to it)
};

namespace detail {
/// Validate a flight key and options (invalid_argument).
void check_flight(std::string_view key, const db_flight_options& options);
/// Try to take the claim on `key` for `owner`; true when taken.
bool flight_try_claim(database& db, std::string_view key, std::string_view owner, std::chrono::milliseconds ttl);
/// Release `owner`'s claim on `key`.
void flight_release(database& db, std::string_view key, std::string_view owner) noexcept;
/// True while some live (unexpired) claim on `key` exists.
bool flight_claimed(database& db, std::string_view key);
/// A fresh claim owner id.
std::string flight_owner();
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
  /// version); `compute` produces and stores it. Threads of this process share one attempt.
  V run(std::string_view key, const std::function<std::optional<V>()>& lookup, const std::function<V()>& compute) {
    detail::check_flight(key, options_);
    return local_.run(std::string(key), [&] { return attempt(key, lookup, compute); });
  }

  /// Figures of the in-process part.
  flight_stats stats() const { return local_.stats(); }

private:
  V attempt(std::string_view key, const std::function<std::optional<V>()>& lookup, const std::function<V()>& compute) {
    const auto deadline = std::chrono::steady_clock::now() + options_.max_wait;
    auto pause = options_.poll_min;
    const std::string owner = detail::flight_owner();
    for (;;) {
      if (auto found = lookup()) return std::move(*found);
      if (detail::flight_try_claim(db_, key, owner, options_.claim_ttl)) {
        try {
          // The previous holder may have stored its result between our lookup and our claim.
          std::optional<V> again = lookup();
          V result = again ? std::move(*again) : compute();
          detail::flight_release(db_, key, owner);
          return result;
        } catch (...) {
          detail::flight_release(db_, key, owner);
          throw;
        }
      }
      // Another process computes: wait until its result shows up or its claim ends (released after a
      // failure, or expired after a crash), then look again and possibly claim ourselves.
      while (detail::flight_claimed(db_, key)) {
        if (std::chrono::steady_clock::now() >= deadline)
          raise(errc::timeout, "single-flight: no result for '" + std::string(key) + "' within max_wait");
        std::this_thread::sleep_for(pause);
        pause = std::min(options_.poll_max, pause * 2);
        if (auto found = lookup()) return std::move(*found);
      }
    }
  }

  database db_;
  db_flight_options options_;
  single_flight<std::string, V> local_;
};

} // namespace casecore
