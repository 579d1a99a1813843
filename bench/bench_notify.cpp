// bench_notify: enqueue-to-start latency of a job, with and without LISTEN/NOTIFY wake-ups.
//   A producer ("host A": its own database handle and transport) enqueues jobs at a steady rate;
//   a worker ("host B": its own handle, pool and transport, 2 threads, poll 500 ms) runs them. The
//   latency of a job is the time from its enqueuing transaction's commit to its handler's start.
//   polling 500 ms : the worker has no transport; only its poll interval finds new jobs;
//   LISTEN/NOTIFY  : the producer calls transport->notify(tx, topic) in the enqueuing transaction,
//                    the worker's transport LISTENs on a direct connection (poll still 500 ms).
// PostgreSQL only (BENCH_PG_URL / CASECORE_TEST_PG_URL); runs in a schema of its own, dropped after.
// BENCH_JOBS jobs per mode (default 200) at BENCH_RATE jobs per second (default 20).
#include "harness.hpp"

#include <casecore/detail/token.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/postgres/notify_transport.hpp>
#include <casecore/worker.hpp>

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

using namespace casecore;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count(); }

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

struct figures {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  std::size_t jobs = 0;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

figures run_mode(const std::string& url, bool listen, int jobs, int rate) {
  auto producer_db = open(url);
  auto worker_db = open(url);
  const std::string channel = "bench_" + detail::random_token().substr(0, 12);
  postgres::notify_transport_options o;
  o.channel = channel;
  o.on_event = [](std::string_view) {};
  std::shared_ptr<postgres::notify_transport> producer_transport, worker_transport;
  if (listen) {
    o.listen_url = url;
    producer_transport = postgres::make_notify_transport(producer_db, o);
    worker_transport = postgres::make_notify_transport(worker_db, o);
    worker_transport->wait_listening(10s);
  }

  std::mutex m;
  std::vector<double> latencies;
  jobs::worker_options wo;
  wo.threads = 2;
  wo.poll = 500ms;
  wo.transport = worker_transport;
  jobs::worker w(worker_db, wo);
  w.on_stage("bench", "run", [&](jobs::job_context& ctx) {
    const auto started = now_ns();
    const auto committed = std::stoll(ctx.current().payload);
    std::lock_guard g(m);
    latencies.push_back(static_cast<double>(started - committed) / 1e6);
  });
  w.start();
  std::this_thread::sleep_for(700ms); // both worker threads past their first (empty) claim

  const auto period = std::chrono::nanoseconds(1'000'000'000 / rate);
  auto next = clock_type::now();
  for (int i = 0; i < jobs; ++i) {
    std::this_thread::sleep_until(next);
    next += period;
    // The payload carries the commit time: stamped just before COMMIT, the transaction's last act.
    producer_db.write([&](transaction& tx) {
      jobs::job_spec spec;
      spec.operation = "bench";
      spec.subject = "job-" + std::to_string(i);
      spec.payload = std::to_string(now_ns());
      jobs::enqueue(tx, spec);
      if (producer_transport) producer_transport->notify(tx, wo.topic);
    });
  }
  const auto deadline = clock_type::now() + 10s;
  while (clock_type::now() < deadline) {
    {
      std::lock_guard g(m);
      if (latencies.size() >= static_cast<std::size_t>(jobs)) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  w.stop();
  figures f;
  std::lock_guard g(m);
  f.jobs = latencies.size();
  if (!latencies.empty()) {
    f.p50_ms = percentile(latencies, 0.50);
    f.p99_ms = percentile(latencies, 0.99);
    f.max_ms = *std::max_element(latencies.begin(), latencies.end());
  }
  return f;
}

} // namespace

int main() {
  const auto base = bench::pg_url();
  if (base.empty()) {
    std::printf("bench_notify: set BENCH_PG_URL or CASECORE_TEST_PG_URL (PostgreSQL only)\n");
    return 0;
  }
  const int jobs = env_int("BENCH_JOBS", 200), rate = std::max(1, env_int("BENCH_RATE", 20));
  const std::string schema = "bench_notify_" + detail::random_token().substr(0, 12);
  auto admin = open(base);
  admin.write([&](transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema); });
  const auto url = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
  {
    auto db = open(url);
    migrate(db);
  }
  std::printf("| wake-up | jobs | rate/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n");
  for (bool listen : {false, true}) {
    const auto f = run_mode(url, listen, jobs, rate);
    std::printf("| %s | %zu | %d | %.1f | %.1f | %.1f |\n", listen ? "LISTEN/NOTIFY (poll 500 ms)" : "polling 500 ms", f.jobs, rate, f.p50_ms,
                f.p99_ms, f.max_ms);
    std::fflush(stdout);
  }
  admin.write([&](transaction& tx) { tx.exec_script("DROP SCHEMA " + schema + " CASCADE"); });
  return 0;
}
