#include <casecore/detail/text.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/leader.hpp>

namespace casecore {

namespace {
casecore::fence fence_of(const lease::grant& g) { return {g.name, g.token}; }
} // namespace

leader_election::leader_election(database db, std::string name, std::string owner, leader_options options)
    : db_(std::move(db)), name_(std::move(name)), owner_(std::move(owner)), options_(std::move(options)) {
  detail::check_printable(name_, "leader election name", 200);
  detail::check_printable(owner_, "leader election owner", 200);
  if (options_.ttl.count() <= 0 || options_.ttl > std::chrono::hours(24 * 365))
    raise(errc::invalid_argument, "leader election ttl must be 1 ms .. 1 year");
}

leader_election::~leader_election() {
  try {
    resign();
  } catch (...) { // the lease expires by itself
  }
}

bool leader_election::tick() {
  std::lock_guard serial(tick_m_);
  std::optional<casecore::fence> deposed, elected;
  std::optional<lease::grant> held;
  {
    std::lock_guard g(state_m_);
    // Past the local expiry the term is over whatever the database says next: never renew a term
    // this process may already have outlived (the renewal would fail anyway; say so first).
    if (grant_ && steady::now() >= held_until_) {
      deposed = fence_of(*grant_);
      grant_.reset();
    }
    held = grant_;
  }
  auto settle = [&] {
    if (deposed && options_.on_deposed) options_.on_deposed(*deposed);
    if (elected && options_.on_elected) options_.on_elected(*elected);
  };
  try {
    const auto before = steady::now(); // the database sets expiry = its now + ttl after this
    if (held) {
      try {
        auto renewed = lease::renew(db_, *held, options_.ttl);
        std::lock_guard g(state_m_);
        grant_ = std::move(renewed);
        held_until_ = before + options_.ttl;
      } catch (const lease_lost&) {
        std::lock_guard g(state_m_);
        deposed = fence_of(*held);
        grant_.reset();
        held.reset();
      }
    }
    if (!held) {
      const auto campaign_start = steady::now();
      if (auto won = lease::try_acquire(db_, name_, owner_, options_.ttl)) {
        std::lock_guard g(state_m_);
        elected = fence_of(*won);
        grant_ = std::move(won);
        held_until_ = campaign_start + options_.ttl;
      }
    }
  } catch (...) {
    settle();
    throw;
  }
  settle();
  return is_leader();
}

bool leader_election::is_leader() const {
  std::lock_guard g(state_m_);
  return grant_ && steady::now() < held_until_;
}

std::optional<casecore::fence> leader_election::fence() const {
  std::lock_guard g(state_m_);
  if (!grant_ || steady::now() >= held_until_) return std::nullopt;
  return fence_of(*grant_);
}

std::optional<lease::grant> leader_election::term() const {
  std::lock_guard g(state_m_);
  if (!grant_ || steady::now() >= held_until_) return std::nullopt;
  return grant_;
}

void leader_election::check(transaction& tx) const {
  const auto t = term();
  if (!t) throw lease_lost("leader election '" + name_ + "': this candidate does not lead");
  lease::check(tx, t->name, t->token);
}

void leader_election::resign() {
  std::lock_guard serial(tick_m_);
  std::optional<lease::grant> held;
  {
    std::lock_guard g(state_m_);
    held = std::move(grant_);
    grant_.reset();
  }
  if (!held) return;
  // Deposed first: from here on this candidate does not lead, whether or not the release lands.
  std::exception_ptr failed;
  try {
    lease::release(db_, *held); // false: it had already expired or changed hands
  } catch (...) {
    failed = std::current_exception();
  }
  if (options_.on_deposed) options_.on_deposed(fence_of(*held));
  if (failed) std::rethrow_exception(failed);
}

leader_task sweep_orphans_task(file_registry& registry, std::chrono::milliseconds period, std::chrono::milliseconds grace) {
  if (period.count() <= 0) raise(errc::invalid_argument, "sweep_orphans_task period must be positive");
  if (grace.count() < 0) raise(errc::invalid_argument, "sweep_orphans_task grace must not be negative");
  return {"casecore.files.sweep_orphans", period,
          [&registry, grace](database&, const casecore::fence&) { registry.sweep_orphans(grace); }};
}

leader_task outbox_delivery_task(std::string topic, std::function<void(const outbox::message&)> handler,
                                 std::chrono::milliseconds period, outbox::drain_options options) {
  if (period.count() <= 0) raise(errc::invalid_argument, "outbox_delivery_task period must be positive");
  if (!handler) raise(errc::invalid_argument, "outbox_delivery_task needs a handler");
  if (topic.empty()) raise(errc::invalid_argument, "outbox_delivery_task needs a topic");
  if (options.batch == 0) raise(errc::invalid_argument, "outbox_delivery_task batch must be positive");
  return {"casecore.outbox.deliver", period, [topic = std::move(topic), handler = std::move(handler), options](database& db, const casecore::fence&) {
            // Until a batch comes back short: a backlog drains in one run, a bounded one.
            for (int round = 0; round < 100; ++round)
              if (outbox::drain(db, topic, handler, options) < options.batch) break;
          }};
}

} // namespace casecore
