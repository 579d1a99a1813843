#include <casecore/detail/step.hpp>
#include <casecore/testing/steps.hpp>

#include <atomic>

namespace casecore::testing {

namespace {
std::atomic<step_gate*> active{nullptr};

void hook(std::string_view name) {
  if (auto* gate = active.load(std::memory_order_acquire)) gate->arrive(name);
}
} // namespace

step_gate::step_gate() {
  step_gate* expected = nullptr;
  if (!active.compare_exchange_strong(expected, this)) raise(errc::invalid_argument, "a step_gate is already installed");
  detail::set_step_hook(&hook);
}

step_gate::~step_gate() {
  detail::set_step_hook(nullptr);
  {
    std::lock_guard g(m_);
    closing_ = true;
  }
  cv_.notify_all();
  // Wait for parked threads to leave before the gate's memory goes away.
  std::unique_lock g(m_);
  cv_.wait(g, [&] {
    for (const auto& [name, a] : arms_)
      if (a.parked > 0) return false;
    return true;
  });
  g.unlock();
  active.store(nullptr, std::memory_order_release);
}

void step_gate::pause_at(std::string name, int count, std::optional<std::thread::id> only) {
  if (count < 1) raise(errc::invalid_argument, "pause_at needs count >= 1");
  std::lock_guard g(m_);
  auto& a = arms_[std::move(name)];
  a.pause += count;
  a.only = only;
}

void step_gate::fail_at(std::string name, errc code, std::optional<std::thread::id> only) {
  std::lock_guard g(m_);
  auto& a = arms_[std::move(name)];
  a.fail = code;
  a.only = only;
}

void step_gate::arrive(std::string_view name) {
  std::unique_lock g(m_);
  if (counts_[std::string(name)]++ == 0) order_.emplace_back(name);
  auto it = arms_.find(name);
  if (it == arms_.end() || closing_) return;
  auto& a = it->second;
  if (a.only && *a.only != std::this_thread::get_id()) return;
  if (a.fail) {
    const errc code = *a.fail;
    a.fail.reset();
    g.unlock();
    raise(code, "injected at step " + std::string(name));
  }
  if (a.pause <= 0) return;
  --a.pause;
  ++a.parked;
  const auto gen = a.generation;
  cv_.notify_all();
  cv_.wait(g, [&] { return closing_ || a.generation != gen; });
  --a.parked;
  cv_.notify_all();
}

bool step_gate::wait_parked(std::string_view name, std::chrono::milliseconds timeout) {
  std::unique_lock g(m_);
  return cv_.wait_for(g, timeout, [&] {
    auto it = arms_.find(name);
    return it != arms_.end() && it->second.parked > 0;
  });
}

void step_gate::release(std::string_view name) {
  {
    std::lock_guard g(m_);
    auto it = arms_.find(name);
    if (it == arms_.end()) return;
    ++it->second.generation;
    it->second.pause = 0;
  }
  cv_.notify_all();
}

void step_gate::release_all() {
  {
    std::lock_guard g(m_);
    for (auto& [name, a] : arms_) {
      ++a.generation;
      a.pause = 0;
      a.fail.reset();
    }
  }
  cv_.notify_all();
}

std::size_t step_gate::reached(std::string_view name) const {
  std::lock_guard g(m_);
  auto it = counts_.find(name);
  return it == counts_.end() ? 0 : it->second;
}

std::vector<std::string> step_gate::seen() const {
  std::lock_guard g(m_);
  return order_;
}

} // namespace casecore::testing
