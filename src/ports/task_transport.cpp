// The task_transport port's validation layer and the in-process default.
#include <casecore/error.hpp>
#include <casecore/ports/task_transport.hpp>
#include <casecore/transaction.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>

namespace casecore {

bool task_transport::valid_topic(std::string_view topic) noexcept {
  return !topic.empty() && topic.size() <= 200 &&
         std::all_of(topic.begin(), topic.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

namespace {
std::string checked_topic(std::string_view topic) {
  if (!task_transport::valid_topic(topic)) raise(errc::invalid_argument, "task topic must be 1..200 printable ASCII characters");
  return std::string(topic);
}
} // namespace

bool task_subscription::wait(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) raise(errc::invalid_argument, "wait timeout must not be negative");
  return do_wait(timeout);
}

void task_transport::notify(std::string_view topic) { do_notify(checked_topic(topic)); }

void task_transport::notify(transaction& tx, std::string_view topic) { do_notify_in(tx, checked_topic(topic)); }

void task_transport::do_notify_in(transaction& tx, const std::string& topic) {
  tx.after_commit([this, topic] { do_notify(topic); });
}

std::unique_ptr<task_subscription> task_transport::subscribe(std::string_view topic) { return do_subscribe(checked_topic(topic)); }

namespace {

// Each topic has a generation counter; a subscription remembers the generation it has seen, so a
// notify between subscribe and wait is observed as "generation moved" instead of being lost.
struct topic_state {
  std::mutex mutex;
  std::condition_variable cv;
  std::uint64_t generation = 0;
};

class inprocess_subscription final : public task_subscription {
public:
  explicit inprocess_subscription(std::shared_ptr<topic_state> t) : topic_(std::move(t)) {
    std::lock_guard g(topic_->mutex);
    seen_ = topic_->generation;
  }

protected:
  bool do_wait(std::chrono::milliseconds timeout) override {
    std::unique_lock l(topic_->mutex);
    const bool woken = topic_->cv.wait_for(l, timeout, [&] { return topic_->generation != seen_; });
    seen_ = topic_->generation;
    return woken;
  }

private:
  std::shared_ptr<topic_state> topic_;
  std::uint64_t seen_ = 0;
};

class inprocess_task_transport final : public task_transport {
protected:
  void do_notify(const std::string& topic) override {
    auto t = state(topic);
    {
      std::lock_guard g(t->mutex);
      ++t->generation;
    }
    t->cv.notify_all();
  }
  std::unique_ptr<task_subscription> do_subscribe(const std::string& topic) override {
    return std::make_unique<inprocess_subscription>(state(topic));
  }

private:
  std::shared_ptr<topic_state> state(const std::string& topic) {
    std::lock_guard g(mutex_);
    auto& slot = topics_[topic];
    if (!slot) slot = std::make_shared<topic_state>();
    return slot;
  }
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<topic_state>> topics_;
};

} // namespace

std::unique_ptr<task_transport> make_inprocess_task_transport() { return std::make_unique<inprocess_task_transport>(); }

} // namespace casecore
