// examples/common/progress.hpp — a one-line progress bar on stderr for the example programs.
//
// Many threads call add() (a relaxed atomic increment); one background thread redraws the bar ten
// times a second, so workers never touch the terminal. The bar is drawn only when stderr is a
// terminal (ctest logs and pipes stay clean) unless disabled explicitly. Destruction (or done())
// draws the final state and ends the line.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace example {

/// A progress bar for `total` units of work.
class progress {
public:
  /// Start drawing `label` for `total` units (nothing is drawn when `enabled` is false or stderr is no tty).
  progress(std::string label, std::int64_t total, bool enabled = true)
      : label_(std::move(label)), total_(total > 0 ? total : 1), enabled_(enabled && ::isatty(2) == 1) {
    if (enabled_) painter_ = std::thread([this] { paint_loop(); });
  }
  ~progress() { done(); }
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  /// Count `n` more units done (thread-safe).
  void add(std::int64_t n = 1) noexcept { done_.fetch_add(n, std::memory_order_relaxed); }
  /// Set the units done (thread-safe; for time-based bars).
  void set(std::int64_t n) noexcept { done_.store(n, std::memory_order_relaxed); }
  /// Stop drawing and end the line. Idempotent.
  void done() {
    if (!painter_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    painter_.join();
    paint();
    std::fputc('\n', stderr);
  }

private:
  void paint_loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) paint();
  }
  void paint() const {
    constexpr int width = 30;
    const auto n = std::min(done_.load(std::memory_order_relaxed), total_);
    const int filled = static_cast<int>(n * width / total_);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r  %-22s [%s] %3d%%", label_.c_str(), bar.c_str(), static_cast<int>(n * 100 / total_));
    std::fflush(stderr);
  }

  std::string label_;
  std::int64_t total_;
  bool enabled_;
  std::atomic<std::int64_t> done_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread painter_;
};

} // namespace example
