#include <casecore/detail/tx_duration.hpp>
#include <casecore/metrics.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace casecore::metrics {

std::string_view to_string(metric_type type) noexcept {
  switch (type) {
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
  }
  return "untyped";
}

bool valid_metric_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 200) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; };
  if (!head(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 100 || name.starts_with("__")) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!head(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

namespace {

void check_names(std::string_view name, const labels& l) {
  if (!valid_metric_name(name)) raise(errc::invalid_argument, "invalid metric name '" + std::string(name) + "'");
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (!valid_label_name(l[i].first) || l[i].first == "le")
      raise(errc::invalid_argument, "invalid label name '" + l[i].first + "' on metric " + std::string(name));
    for (std::size_t j = 0; j < i; ++j)
      if (l[j].first == l[i].first) raise(errc::invalid_argument, "duplicate label '" + l[i].first + "' on metric " + std::string(name));
  }
}

void check_bounds(const std::vector<double>& bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) raise(errc::invalid_argument, "histogram bounds must be finite (+Inf is implicit)");
    if (i > 0 && !(bounds[i] > bounds[i - 1])) raise(errc::invalid_argument, "histogram bounds must be strictly increasing");
  }
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : "NaN";
}

void escape(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quotes) out += "\\\"";
    else out += c;
  }
}

labels with_le(labels l, double bound) {
  l.emplace_back("le", format_value(bound));
  return l;
}

} // namespace

// --- sample_sink -------------------------------------------------------------------------------

family& sample_sink::find(std::string_view name, std::string_view help, metric_type type) {
  if (!valid_metric_name(name)) raise(errc::invalid_argument, "invalid metric name '" + std::string(name) + "'");
  if (auto it = index_.find(name); it != index_.end()) {
    auto& f = families_[it->second];
    if (f.type != type) raise(errc::invalid_argument, "metric " + std::string(name) + " reported with two types");
    return f;
  }
  index_.emplace(std::string(name), families_.size());
  families_.push_back({std::string(name), std::string(help), type, {}});
  return families_.back();
}

void sample_sink::counter(std::string_view name, std::string_view help, const labels& l, double value) {
  find(name, help, metric_type::counter).samples.push_back({"", l, value});
}

void sample_sink::gauge(std::string_view name, std::string_view help, const labels& l, double value) {
  find(name, help, metric_type::gauge).samples.push_back({"", l, value});
}

void sample_sink::histogram(std::string_view name, std::string_view help, const labels& l,
                            const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts, double sum) {
  if (counts.size() != bounds.size() + 1) raise(errc::invalid_argument, "histogram needs one count per bound plus +Inf");
  auto& f = find(name, help, metric_type::histogram);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const double bound = i < bounds.size() ? bounds[i] : INFINITY;
    f.samples.push_back({"_bucket", with_le(l, bound), static_cast<double>(cumulative)});
  }
  f.samples.push_back({"_sum", l, sum});
  f.samples.push_back({"_count", l, static_cast<double>(cumulative)});
}

void sample_sink::merge(family f) {
  auto& into = find(f.name, f.help, f.type);
  for (auto& s : f.samples) into.samples.push_back(std::move(s));
}

std::vector<family> sample_sink::take() {
  index_.clear();
  return std::exchange(families_, {});
}

// --- instruments -------------------------------------------------------------------------------

histogram::histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  check_bounds(bounds_);
  counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
}

void histogram::observe(double v) noexcept {
  const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<std::uint64_t> histogram::counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> default_seconds_buckets() { return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}; }

// --- registry ----------------------------------------------------------------------------------

struct registry::instrument {
  std::string name, help;
  metric_type type;
  labels label_pairs;
  metrics::counter c;
  metrics::gauge g;
  std::unique_ptr<metrics::histogram> h;
};

registry::registry() = default;
registry::~registry() = default;

registry::instrument& registry::find_or_add(std::string_view name, std::string_view help, metric_type type,
                                            const labels& l, std::vector<double> bounds) {
  check_names(name, l);
  std::lock_guard lock(mutex_);
  for (auto& i : instruments_) {
    if (i->name != name) continue;
    if (i->type != type) raise(errc::invalid_argument, "metric " + std::string(name) + " already registered as " + std::string(to_string(i->type)));
    if (i->help != help) raise(errc::invalid_argument, "metric " + std::string(name) + " already registered with another help text");
    if (i->label_pairs == l) return *i;
  }
  auto inst = std::make_unique<instrument>();
  inst->name = std::string(name);
  inst->help = std::string(help);
  inst->type = type;
  inst->label_pairs = l;
  if (type == metric_type::histogram) inst->h = std::make_unique<metrics::histogram>(bounds.empty() ? default_seconds_buckets() : std::move(bounds));
  instruments_.push_back(std::move(inst));
  return *instruments_.back();
}

metrics::counter& registry::counter(std::string_view name, std::string_view help, const labels& l) {
  return find_or_add(name, help, metric_type::counter, l, {}).c;
}

metrics::gauge& registry::gauge(std::string_view name, std::string_view help, const labels& l) {
  return find_or_add(name, help, metric_type::gauge, l, {}).g;
}

metrics::histogram& registry::histogram(std::string_view name, std::string_view help, const labels& l,
                                        std::vector<double> bounds) {
  check_bounds(bounds);
  return *find_or_add(name, help, metric_type::histogram, l, std::move(bounds)).h;
}

std::uint64_t registry::add_collector(collector c) {
  if (!c) raise(errc::invalid_argument, "metrics collector must not be empty");
  std::lock_guard lock(mutex_);
  collectors_.emplace_back(next_id_, std::move(c));
  return next_id_++;
}

void registry::remove_collector(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  std::erase_if(collectors_, [&](const auto& p) { return p.first == id; });
}

std::uint64_t registry::add_database(database db, std::string name) {
  if (name.empty()) raise(errc::invalid_argument, "database name for metrics must not be empty");
  return add_collector([db = std::move(db), name = std::move(name)](sample_sink& sink) { collect_database(sink, db, name); });
}

std::vector<family> registry::collect() const {
  sample_sink sink;
  std::vector<collector> collectors;
  {
    std::lock_guard lock(mutex_);
    for (const auto& i : instruments_) {
      switch (i->type) {
        case metric_type::counter: sink.counter(i->name, i->help, i->label_pairs, static_cast<double>(i->c.value())); break;
        case metric_type::gauge: sink.gauge(i->name, i->help, i->label_pairs, i->g.value()); break;
        case metric_type::histogram: sink.histogram(i->name, i->help, i->label_pairs, i->h->bounds(), i->h->counts(), i->h->sum()); break;
      }
    }
    for (const auto& [id, c] : collectors_) collectors.push_back(c);
  }
  // Collectors run outside the lock: they may query a database or register instruments themselves.
  for (const auto& c : collectors) {
    sample_sink part;
    try {
      c(part);
      for (auto& f : part.take()) sink.merge(std::move(f)); // throws on a type clash with earlier families
    } catch (...) {
      collector_failures_.inc();
    }
  }
  sink.counter("casecore_collector_failures_total", "Metric collectors that threw during a collection", {},
               static_cast<double>(collector_failures_.value()));
  return sink.take();
}

std::string registry::prometheus_text() const { return to_prometheus(collect()); }

void registry::visit(const std::function<void(const family&)>& callback) const {
  for (const auto& f : collect()) callback(f);
}

// --- rendering ---------------------------------------------------------------------------------

std::string to_prometheus(const std::vector<family>& families) {
  std::string out;
  for (const auto& f : families) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    escape(out, f.help, false);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += to_string(f.type);
    out += '\n';
    for (const auto& s : f.samples) {
      out += f.name;
      out += s.suffix;
      if (!s.label_pairs.empty()) {
        out += '{';
        for (std::size_t i = 0; i < s.label_pairs.size(); ++i) {
          if (i) out += ',';
          out += s.label_pairs[i].first;
          out += "=\"";
          escape(out, s.label_pairs[i].second, true);
          out += '"';
        }
        out += '}';
      }
      out += ' ';
      out += format_value(s.value);
      out += '\n';
    }
  }
  return out;
}

void collect_database(sample_sink& sink, const database& db, std::string_view name) {
  const labels l{{"db", std::string(name)}};
  const auto p = db.pool_stats();
  auto d = [](auto v) { return static_cast<double>(v); };
  sink.gauge("casecore_pool_capacity", "Connections the pool may open (size + overflow)", l, d(p.capacity));
  sink.gauge("casecore_pool_in_use", "Connections handed out now", l, d(p.in_use));
  sink.gauge("casecore_pool_idle", "Open connections idle in the pool", l, d(p.idle));
  sink.gauge("casecore_pool_waiting", "Callers waiting for a connection now", l, d(p.waiting));
  sink.counter("casecore_pool_acquired_total", "Successful connection acquisitions", l, d(p.acquired));
  sink.counter("casecore_pool_timeouts_total", "Acquisitions that gave up after the acquire timeout", l, d(p.timeouts));
  sink.counter("casecore_pool_opened_total", "Connections opened", l, d(p.opened));
  sink.counter("casecore_pool_reconnects_total", "Broken connections replaced", l, d(p.reconnects));
  sink.counter("casecore_pool_recycled_total", "Connections closed for age or overflow", l, d(p.recycled));
  std::vector<double> bounds;
  for (auto us : acquire_wait_buckets_us) bounds.push_back(static_cast<double>(us) / 1e6);
  sink.histogram("casecore_pool_acquire_wait_seconds", "Time spent waiting for a connection", l, bounds,
                 std::vector<std::uint64_t>(p.acquire_wait.begin(), p.acquire_wait.end()), d(p.acquire_wait_sum_us) / 1e6);

  const auto t = db.tx_stats();
  sink.counter("casecore_tx_commits_total", "Committed write transactions", l, d(t.commits));
  sink.counter("casecore_tx_reads_total", "Completed read transactions", l, d(t.reads));
  sink.counter("casecore_tx_rollbacks_total", "Transaction attempts rolled back (any cause)", l, d(t.rollbacks));
  const std::pair<const char*, std::uint64_t> retries[] = {{"busy", t.retries_busy},
                                                           {"serialization", t.retries_serialization},
                                                           {"deadlock", t.retries_deadlock},
                                                           {"connection", t.retries_connection},
                                                           {"pool_timeout", t.retries_pool_timeout},
                                                           {"reconnect", t.retries_reconnect}};
  for (const auto& [cause, n] : retries) {
    auto lc = l;
    lc.emplace_back("cause", cause);
    sink.counter("casecore_tx_retries_total", "Transaction retries by cause", lc, d(n));
  }
  {
    const auto durations = std::static_pointer_cast<detail::tx_durations>(detail::feature_state(
        db, &detail::tx_durations_key, [] { return std::static_pointer_cast<void>(std::make_shared<detail::tx_durations>()); }));
    std::vector<double> tb;
    for (auto us : detail::tx_duration_bounds_us) tb.push_back(static_cast<double>(us) / 1e6);
    const std::pair<const char*, const detail::tx_durations::series*> modes[] = {{"write", &durations->write},
                                                                               {"read", &durations->read}};
    for (const auto& [mode, series] : modes) {
      auto lm = l;
      lm.emplace_back("mode", mode);
      std::vector<std::uint64_t> counts;
      for (const auto& c : series->counts) counts.push_back(c.load(std::memory_order_relaxed));
      sink.histogram("casecore_transaction_duration_seconds",
                     "Duration of units of work, from the call to its return or throw (retries included)", lm, tb,
                     counts, d(series->sum_us.load(std::memory_order_relaxed)) / 1e6);
    }
  }
  sink.counter("casecore_tx_outcome_unknown_total", "Commits whose outcome is unknown", l, d(t.outcome_unknown));
  sink.counter("casecore_conflicts_total", "Version, state and fencing conflicts reported", l, d(t.conflicts));
  sink.counter("casecore_hook_failures_total", "After-commit / after-rollback hooks that threw", l, d(t.hook_failures));
}

} // namespace casecore::metrics
