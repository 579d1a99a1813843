#include <casecore/log.hpp>

#include <atomic>
#include <memory>
#include <mutex>

namespace casecore {

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "unknown";
}

std::string_view log_event::field(std::string_view key) const noexcept {
  for (const auto& [k, v] : fields)
    if (k == key) return v;
  return {};
}

namespace {
// The sink is held by a shared_ptr copied under a mutex for each event: replacing it never destroys
// a function another thread is running. The flag keeps the no-sink path to one atomic load.
std::atomic<bool> enabled{false};
std::atomic<std::uint64_t> dropped{0};
std::mutex sink_mutex;
std::shared_ptr<const log_sink> current;
} // namespace

void set_log_sink(log_sink sink) {
  auto next = sink ? std::make_shared<const log_sink>(std::move(sink)) : nullptr;
  std::shared_ptr<const log_sink> old;
  {
    std::lock_guard lock(sink_mutex);
    old = std::exchange(current, std::move(next));
    enabled.store(current != nullptr, std::memory_order_relaxed);
  }
  // `old` is released outside the lock (its destructor may be the host's).
}

std::uint64_t dropped_log_events() noexcept { return dropped.load(std::memory_order_relaxed); }

namespace detail {

bool log_enabled() noexcept { return enabled.load(std::memory_order_relaxed); }

void emit(log_level level, std::string_view name, std::string message,
          std::initializer_list<std::pair<std::string_view, std::string>> fields) noexcept {
  if (!log_enabled()) return;
  try {
    std::shared_ptr<const log_sink> sink;
    {
      std::lock_guard lock(sink_mutex);
      sink = current;
    }
    if (!sink) return;
    log_event e;
    e.level = level;
    e.name = std::string(name);
    e.message = std::move(message);
    e.fields.reserve(fields.size());
    for (const auto& [k, v] : fields) e.fields.emplace_back(std::string(k), v);
    e.at = std::chrono::system_clock::now();
    (*sink)(e);
  } catch (...) {
    dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

} // namespace detail

} // namespace casecore
