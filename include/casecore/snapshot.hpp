// casecore/snapshot.hpp — atomically published versions of shared, read-mostly state (a model).
//
// A writer publishes a complete new value; readers get a shared_ptr to one complete version and keep
// it as long as they like, while newer versions are published behind them. Nothing is ever mutated
// in place, so a reader cannot observe a torn state. Each version carries a number (1, 2, ...,
// strictly increasing in publication order; 0 = nothing published) and its publication time.
//
// Concurrency: all members are thread-safe. Readers take a mutex only for the pointer copy (a
// reference-count increment), never while a writer builds its value; publishers are serialised with
// each other so version numbers follow publication order. (std::atomic<std::shared_ptr> would be
// lock-free-looking, but libstdc++ 12's implementation is reported as racy by ThreadSanitizer.)
// Failure modes: publishing a null pointer throws invalid_argument; update() propagates the
// exception of its function and publishes nothing.
#pragma once

#include <casecore/error.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// One published version of a snapshot.
template <class T> struct snapshot_version {
  std::shared_ptr<const T> value;                      ///< the state (null when nothing was published)
  std::uint64_t version = 0;                           ///< 1, 2, ... (0: nothing published yet)
  std::chrono::system_clock::time_point published_at;  ///< when it was published
};

/// Shared state published as immutable versions.
template <class T> class snapshot {
public:
  /// An empty snapshot (version 0).
  snapshot() : current_(std::make_shared<const snapshot_version<T>>()) {}
  /// A snapshot whose version 1 is `initial`.
  explicit snapshot(std::shared_ptr<const T> initial) : snapshot() { publish(std::move(initial)); }
  snapshot(const snapshot&) = delete;
  snapshot& operator=(const snapshot&) = delete;

  /// Publish `value` as the new current version; returns its version number.
  std::uint64_t publish(std::shared_ptr<const T> next) {
    if (!next) raise(errc::invalid_argument, "snapshot: cannot publish a null value");
    std::lock_guard writer(write_mutex_);
    return install(std::move(next));
  }
  /// Publish a value built in place.
  std::uint64_t publish(T next) { return publish(std::make_shared<const T>(std::move(next))); }

  /// Build the next version from the current one (`f(const T* current)` returns shared_ptr<const T>
  /// or T) while other publishers wait; readers are not blocked. Returns the new version number.
  template <class F> std::uint64_t update(F&& f) {
    std::lock_guard writer(write_mutex_);
    auto now = load();
    auto next = f(now.value.get());
    if constexpr (std::is_convertible_v<decltype(next), std::shared_ptr<const T>>) {
      std::shared_ptr<const T> p = std::move(next);
      if (!p) raise(errc::invalid_argument, "snapshot: cannot publish a null value");
      return install(std::move(p));
    } else {
      return install(std::make_shared<const T>(std::move(next)));
    }
  }

  /// The current version with its number and publication time (one consistent triple).
  snapshot_version<T> load() const {
    std::shared_ptr<const snapshot_version<T>> cur;
    {
      std::lock_guard reader(read_mutex_);
      cur = current_;
    }
    return *cur;
  }
  /// The current value (null when nothing was published).
  std::shared_ptr<const T> get() const { return load().value; }
  /// The current version number.
  std::uint64_t version() const { return load().version; }

private:
  std::uint64_t install(std::shared_ptr<const T> state) {
    // Build the whole version record before the swap so readers see all of it or none of it.
    auto next = std::make_shared<const snapshot_version<T>>(
        snapshot_version<T>{std::move(state), ++last_version_, std::chrono::system_clock::now()});
    std::shared_ptr<const snapshot_version<T>> old;
    {
      std::lock_guard reader(read_mutex_);
      old = std::exchange(current_, std::move(next));
    }
    return last_version_; // `old` may free a large value: done outside the reader lock
  }

  std::mutex write_mutex_;              // serialises publishers
  mutable std::mutex read_mutex_;       // guards the pointer swap / copy only
  std::shared_ptr<const snapshot_version<T>> current_;
  std::uint64_t last_version_ = 0;      // guarded by write_mutex_
};

} // namespace casecore

CASECORE_API_END
