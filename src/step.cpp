#include <casecore/detail/step.hpp>

namespace casecore::detail {

namespace {
std::atomic<step_hook> installed{nullptr};
} // namespace

step_hook set_step_hook(step_hook hook) noexcept { return installed.exchange(hook, std::memory_order_acq_rel); }

step_hook current_step_hook() noexcept { return installed.load(std::memory_order_acquire); }

} // namespace casecore::detail
