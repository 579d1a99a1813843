// casecore/log.hpp — a logging hook: structured events delivered to one host callback.
//
// casecore logs nothing by itself. A host that wants to know when the library retries a
// transaction, reclaims an expired job claim, loses a claim, sees a handler fail, cannot tell
// whether a commit happened, or times out waiting for a pooled connection installs a sink with
// set_log_sink(); every such event then reaches it as a log_event (level, a stable event name,
// a one-line message and key/value fields). The event names are listed in docs/telemetry.md.
//
// Why one process-wide sink and not a database option: the places that emit (the pool, the unit of
// work, the worker's threads) are deep inside casecore and a host's logger is process-wide anyway
// (spdlog, syslog); every event carries a "db" field (the masked URL) where a database is involved,
// so a host with several databases still tells them apart.
//
// Guarantees: thread-safe (the sink may be replaced while events are emitted from other threads; an
// event in flight finishes on the sink it started with); the sink may be called concurrently from
// several threads; an exception thrown by the sink is swallowed (counted by dropped_log_events())
// and never reaches casecore's code; with no sink set, emitting costs one relaxed atomic load.
// Failure modes: none raised. Fields are plain text as casecore has them (job operations and error
// messages may contain any printable text): escape them for your output format.
//
// Example:
//   casecore::set_log_sink([](const casecore::log_event& e) {
//     std::fprintf(stderr, "%s %s %s\n", std::string(casecore::to_string(e.level)).c_str(), e.name.c_str(), e.message.c_str());
//   });
//   ...
//   casecore::set_log_sink(nullptr); // stop (waits for no one: an event in flight completes)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Severity of a log event.
enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

/// "debug", "info", "warn" or "error".
std::string_view to_string(log_level level) noexcept;

/// One structured event.
struct log_event {
  log_level level = log_level::info;                          ///< severity
  std::string name;                                           ///< stable event name, e.g. "tx.retry"
  std::string message;                                        ///< one human-readable line
  std::vector<std::pair<std::string, std::string>> fields;    ///< key/value details, e.g. {"cause", "deadlock"}
  std::chrono::system_clock::time_point at;                   ///< when it was emitted

  /// The value of field `key`, or "" when absent.
  std::string_view field(std::string_view key) const noexcept;
};

/// The host callback.
using log_sink = std::function<void(const log_event&)>;

/// Install `sink` process-wide (an empty function removes it); returns nothing, never throws for a
/// valid function.
void set_log_sink(log_sink sink);

/// Events whose sink threw (the exception was swallowed).
std::uint64_t dropped_log_events() noexcept;

namespace detail {
/// True when a sink is installed (one relaxed atomic load).
bool log_enabled() noexcept;
/// Deliver an event to the sink, if any. Never throws.
void emit(log_level level, std::string_view name, std::string message,
          std::initializer_list<std::pair<std::string_view, std::string>> fields = {}) noexcept;
} // namespace detail

} // namespace casecore

CASECORE_API_END
