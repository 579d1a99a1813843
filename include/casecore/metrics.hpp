// casecore/metrics.hpp — one metrics registry for every primitive, exposed as Prometheus text.
//
// A host creates a registry (there is no hidden global one), registers its databases (pool and
// transaction figures are pulled from them at collection time) and any instruments of its own:
// counters, gauges and histograms with labels. Other features plug in a collector — a function that
// writes families into a sample_sink each time the registry is collected — so leases, jobs, etc.
// report through the same registry. collect() returns the families; prometheus_text() renders the
// text exposition format (HELP/TYPE lines, escaped labels, histograms with cumulative _bucket series,
// le="+Inf", _sum and _count); visit() hands each family to a host callback (logging).
//
// Database-wide figures (jobs, stages, outbox, leases, PostgreSQL deadlocks and connections, whoever
// wrote them) come from collect_database_wide(); database_prometheus_text(db) renders the complete
// text for a database — the one function `casecore metrics` and `casecore serve`'s /metrics call.
// Each figure's source and scrape cost: docs/telemetry.md.
//
// Concurrency: registration and collection are thread-safe; instruments are lock-free atomics, safe
// to update from any thread while a collection runs. Instruments live as long as their registry.
// Failure modes: invalid metric or label names, a name reused with another type or help text, or
// unsorted histogram bounds throw invalid_argument at registration. A collector that throws is
// skipped for that collection and counted in casecore_collector_failures_total.
#pragma once

#include <casecore/database.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::metrics {

/// Label pairs of one series, e.g. {{"db", "main"}, {"cause", "deadlock"}}.
using labels = std::vector<std::pair<std::string, std::string>>;

/// The Prometheus metric types casecore emits.
enum class metric_type { counter, gauge, histogram };

/// "counter", "gauge" or "histogram".
std::string_view to_string(metric_type type) noexcept;

/// One sample line: family name + suffix ("", "_bucket", "_sum", "_count"), labels and value.
struct sample {
  std::string suffix;   ///< appended to the family name
  labels label_pairs;   ///< labels of this series (for buckets, "le" is the last one)
  double value = 0;     ///< the value
};

/// A metric family: its name, help, type and samples.
struct family {
  std::string name;             ///< e.g. casecore_pool_in_use
  std::string help;             ///< one-line description
  metric_type type = metric_type::gauge; ///< type
  std::vector<sample> samples;  ///< its series
};

/// Where collectors write their figures; samples of one family name are grouped together.
class sample_sink {
public:
  /// A counter sample (name should end in _total).
  void counter(std::string_view name, std::string_view help, const labels& l, double value);
  /// A gauge sample.
  void gauge(std::string_view name, std::string_view help, const labels& l, double value);
  /// A histogram series: `bounds` are upper bucket bounds, `counts` per-bucket (not cumulative)
  /// counts with one extra last entry for +Inf; `sum` of observed values.
  void histogram(std::string_view name, std::string_view help, const labels& l, const std::vector<double>& bounds,
                 const std::vector<std::uint64_t>& counts, double sum);
  /// Append the samples of a ready-made family (merged with earlier samples of the same name).
  void merge(family f);
  /// The families written so far, in first-written order.
  std::vector<family> take();

private:
  family& find(std::string_view name, std::string_view help, metric_type type);
  std::vector<family> families_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// A monotonically increasing count.
class counter {
public:
  /// Add `n` (default 1).
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  /// The count now.
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down.
class gauge {
public:
  /// Set the value.
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  /// Add `d` (may be negative).
  void add(double d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
  /// The value now.
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

/// A distribution of observed values in fixed buckets.
class histogram {
public:
  /// Buckets with these upper bounds (strictly increasing); +Inf is implicit.
  explicit histogram(std::vector<double> bounds);
  /// Record one value.
  void observe(double v) noexcept;
  /// Upper bounds.
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Per-bucket counts (last entry: +Inf), sum and count, read now.
  std::vector<std::uint64_t> counts() const;
  /// Sum of observed values.
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

/// Default latency buckets in seconds (1 ms .. 10 s).
std::vector<double> default_seconds_buckets();

/// Collects every figure of a host: databases, instruments and plugged-in collectors.
class registry {
public:
  /// A collector writes its families into the sink each time the registry is collected.
  using collector = std::function<void(sample_sink&)>;

  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// The counter `name` with `l` (created on first use; same name+labels → same instrument).
  metrics::counter& counter(std::string_view name, std::string_view help, const labels& l = {});
  /// The gauge `name` with `l`.
  metrics::gauge& gauge(std::string_view name, std::string_view help, const labels& l = {});
  /// The histogram `name` with `l` and bucket `bounds` (default_seconds_buckets() when empty).
  metrics::histogram& histogram(std::string_view name, std::string_view help, const labels& l = {},
                                std::vector<double> bounds = {});

  /// Add a collector; returns an id for remove_collector.
  std::uint64_t add_collector(collector c);
  /// Remove a collector (no effect for an unknown id).
  void remove_collector(std::uint64_t id);
  /// Report `db`'s pool and transaction figures under the label db="name"; returns the collector id.
  std::uint64_t add_database(database db, std::string name);

  /// Every family now: instruments first, then collectors in registration order.
  std::vector<family> collect() const;
  /// collect() rendered as Prometheus text exposition format 0.0.4.
  std::string prometheus_text() const;
  /// Hand each family of a collection to `callback` (host logging).
  void visit(const std::function<void(const family&)>& callback) const;

private:
  struct instrument;
  instrument& find_or_add(std::string_view name, std::string_view help, metric_type type, const labels& l,
                          std::vector<double> bounds);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<instrument>> instruments_;
  std::vector<std::pair<std::uint64_t, collector>> collectors_;
  std::uint64_t next_id_ = 1;
  mutable metrics::counter collector_failures_;
};

/// Render families as Prometheus text exposition format 0.0.4.
std::string to_prometheus(const std::vector<family>& families);

/// Write a database's pool and transaction figures into `sink` with the label db="name".
void collect_database(sample_sink& sink, const database& db, std::string_view name);

/// What the database-wide collectors look at (docs/telemetry.md lists every figure, its source and cost).
struct database_wide_options {
  /// Finished jobs and stages are summarised over this trailing window (read through the indexes
  /// on finished_at, so a scrape reads only the rows of the window, never the whole history).
  std::chrono::seconds window{300};
  /// Per-lease series are reported for at most this many leases (by name); the counts cover all.
  std::size_t max_leases = 200;
  /// Upper bounds (seconds) of the job and stage duration histograms.
  std::vector<double> duration_buckets{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
};

/// What database_prometheus_text() renders.
struct exposition_options {
  database_wide_options wide;    ///< the database-wide collectors' settings
  /// Also report this process's own pool and transaction figures for `db` (collect_database), under
  /// db="process_label". Off for a one-shot tool such as `casecore metrics`, whose pool says nothing.
  bool process_figures = false;
  std::string process_label = "main"; ///< the db label of the process figures
};

/// casecore_build_info{version, backend} 1.
void collect_build_info(sample_sink& sink, const database& db);

/// Write the database-wide figures — jobs by operation and state, oldest ready age, stuck claims,
/// recent job and stage durations, attempts and failures, outbox backlog and age, leases, schema
/// versions and (PostgreSQL) deadlocks, server connections and table size estimates — into `sink`.
/// One read-only unit of work; tables not migrated yet are skipped. Throws what db.read throws.
void collect_database_wide(sample_sink& sink, database db, const database_wide_options& options = {});

/// THE full Prometheus text for a database: build info, the database-wide figures and, if asked,
/// the process's own figures. `casecore metrics` and `casecore serve`'s /metrics both call this.
std::string database_prometheus_text(database db, const exposition_options& options = {});

/// True for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool valid_metric_name(std::string_view name) noexcept;
/// True for a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__").
bool valid_label_name(std::string_view name) noexcept;

} // namespace casecore::metrics

CASECORE_API_END
