#include <casecore/detail/backend.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/faults.hpp>

#include <random>

namespace casecore::testing {

namespace {

class faulty_connection final : public detail::connection {
public:
  faulty_connection(std::unique_ptr<detail::connection> inner, std::shared_ptr<fault_injector> injector)
      : inner_(std::move(inner)), injector_(std::move(injector)) {}
  result exec(std::string_view sql, std::span<const value> params) override {
    injector_->maybe_fail(broken_);
    return inner_->exec(sql, params);
  }
  void exec_script(std::string_view sql) override { inner_->exec_script(sql); }
  void begin(const detail::tx_settings& settings) override {
    injector_->maybe_fail(broken_);
    inner_->begin(settings);
  }
  casecore::dialect dialect() const noexcept override { return inner_->dialect(); }
  const sql_fragments& sql() const noexcept override { return inner_->sql(); }
  void commit() override { inner_->commit(); }
  void rollback() noexcept override {
    if (!broken_) inner_->rollback();
  }
  bool ping() noexcept override { return !broken_ && inner_->ping(); }
  bool broken() const noexcept override { return broken_ || inner_->broken(); }

private:
  std::unique_ptr<detail::connection> inner_;
  std::shared_ptr<fault_injector> injector_;
  bool broken_ = false;
};

class faulty_backend final : public detail::backend {
public:
  faulty_backend(std::shared_ptr<detail::backend> inner, std::shared_ptr<fault_injector> injector)
      : inner_(std::move(inner)), injector_(std::move(injector)) {}
  std::unique_ptr<detail::connection> connect() override {
    return std::make_unique<faulty_connection>(inner_->connect(), injector_);
  }
  casecore::dialect dialect() const noexcept override { return inner_->dialect(); }
  std::string describe() const override { return inner_->describe() + " (with injected faults)"; }

private:
  std::shared_ptr<detail::backend> inner_;
  std::shared_ptr<fault_injector> injector_;
};

bool valid_rate(double r) { return r >= 0.0 && r <= 1.0; }

} // namespace

fault_injector::fault_injector(fault_options options) : options_(options) {
  if (!valid_rate(options.busy_rate) || !valid_rate(options.serialization_rate) || !valid_rate(options.disconnect_rate) ||
      options.busy_rate + options.serialization_rate + options.disconnect_rate > 1.0)
    raise(errc::invalid_argument, "fault rates must be within 0..1 and sum to at most 1");
}

std::shared_ptr<detail::backend> fault_injector::wrap(std::shared_ptr<detail::backend> inner) {
  return std::make_shared<faulty_backend>(std::move(inner), shared_from_this());
}

fault_counts fault_injector::counts() const noexcept {
  return {busy_.load(), serialization_.load(), disconnect_.load()};
}

void fault_injector::maybe_fail(bool& broken) {
  if (broken) raise(errc::connection_lost, "injected: connection already dropped");
  if (!enabled_.load(std::memory_order_relaxed)) return;
  thread_local std::mt19937_64 rng{options_.seed ? options_.seed : std::random_device{}()};
  const double roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (roll < options_.busy_rate) {
    ++busy_;
    raise(errc::busy, "injected: database is locked");
  }
  if (roll < options_.busy_rate + options_.serialization_rate) {
    ++serialization_;
    raise(errc::serialization_failure, "injected: could not serialize access due to concurrent update");
  }
  if (roll < options_.busy_rate + options_.serialization_rate + options_.disconnect_rate) {
    ++disconnect_;
    broken = true;
    raise(errc::connection_lost, "injected: server closed the connection unexpectedly");
  }
}

database open_with_faults(std::string_view url, const std::shared_ptr<fault_injector>& injector, database_options options) {
  auto inner = make_backend(url, options);
  database db(injector->wrap(std::move(inner)), std::move(options));
  return db;
}

} // namespace casecore::testing
