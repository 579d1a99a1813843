// lab_protocols: AdLab (seed 002) rebuilt on casecore.
//
// Lab staff create protocols, work orders and reports whose numbers come from year-scoped gapless
// counters (PRT-2026-000123); some creations roll back on purpose and give their number back. The
// protocol status is a state machine edited by many users at once: only declared transitions from
// the status the user saw are applied, stale and illegal ones are refused. Report PDFs (a simulated
// 50 ms render) go through a version-keyed single-flight cache: many users asking for the same
// report at the same version share one render. Pool metrics and a health check close the run.
//
//   lab_protocols [--db URL] [--fresh] [--keep] [--users N] [--rounds N] [--pdf-rounds N]
//                 [--render-ms N] [--no-progress]
#include "../common/args.hpp"
#include "../common/progress.hpp"
#include "../common/setup.hpp"

#include <casecore/counter.hpp>
#include <casecore/health.hpp>
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/repository.hpp>
#include <casecore/single_flight.hpp>
#include <casecore/state_machine.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using casecore::transaction;

namespace {

struct protocol {
  std::string number;
  std::string client;
  std::string status;
  std::string notes;
};

const casecore::repository<protocol> protocols({"protocols", "id",
                                                {casecore::column("number", &protocol::number),
                                                 casecore::column("client", &protocol::client),
                                                 casecore::column("status", &protocol::status),
                                                 casecore::column("notes", &protocol::notes)}});

const casecore::state_machine lifecycle("status", {{"received", "in_process"},
                                                   {"received", "cancelled"},
                                                   {"in_process", "on_hold"},
                                                   {"on_hold", "in_process"},
                                                   {"in_process", "completed"},
                                                   {"in_process", "cancelled"},
                                                   {"completed", "reported"}});
const std::vector<std::string> all_states{"received", "in_process", "on_hold", "completed", "reported", "cancelled"};

std::vector<casecore::migration> schema() {
  return {protocols.create_table_migration("lab_protocols", 1),
          {"lab_protocols", 2, "work orders, reports, numbers, status history",
           "CREATE TABLE work_orders(id {{id}}, number TEXT NOT NULL UNIQUE, protocol_id BIGINT NOT NULL);"
           "CREATE TABLE reports(id {{id}}, number TEXT NOT NULL UNIQUE, protocol_id BIGINT NOT NULL);"
           // Every number handed out by a committed transaction, for the gapless check.
           "CREATE TABLE issued_numbers(kind TEXT NOT NULL, scope TEXT NOT NULL, n BIGINT NOT NULL, number TEXT NOT NULL,"
           " PRIMARY KEY(kind, scope, n));"
           "CREATE TABLE status_history(protocol_id BIGINT NOT NULL, version BIGINT NOT NULL, from_status TEXT NOT NULL,"
           " to_status TEXT NOT NULL, actor TEXT NOT NULL, PRIMARY KEY(protocol_id, version))",
           "", ""}};
}

struct simulated_rollback : std::runtime_error {
  simulated_rollback() : std::runtime_error("simulated failure after the number was allocated") {}
};

// Allocates the next number of `kind` in `year` inside tx and records it; returns the formatted number.
std::string issue(transaction& tx, const std::string& kind, const std::string& prefix, const std::string& year) {
  const auto n = casecore::counter::next(tx, kind, year);
  auto number = casecore::counter::format_number(prefix + "-{scope}-{n:06}", year, n);
  tx.exec("INSERT INTO issued_numbers(kind, scope, n, number) VALUES($1, $2, $3, $4)", kind, year, n, number);
  return number;
}

struct figures {
  std::atomic<int> protocols{0}, work_orders{0}, reports{0}, rolled_back{0};
  std::atomic<int> transitions{0}, illegal_refused{0}, stale_refused{0};
};

class lab {
public:
  explicit lab(casecore::database& db) : db_(db) {}

  void create_protocol(const std::string& me, std::mt19937& rng, figures& fig) {
    const std::string year = rng() % 3 == 0 ? "2025" : "2026";
    const bool fail = rng() % 10 == 0;
    try {
      db_.write([&](transaction& tx) {
        // The counter row stays locked until commit: nothing slow follows the allocation.
        const auto r = protocols.insert(tx, {issue(tx, "protocol", "PRT", year), "client-" + std::to_string(rng() % 20), "received", ""});
        if (fail) throw simulated_rollback();
        tx.after_commit([this, &fig, id = r.id] {
          ++fig.protocols;
          std::lock_guard lock(mutex_);
          ids_.push_back(id);
        });
      }, as(me));
    } catch (const simulated_rollback&) {
      ++fig.rolled_back;
    }
  }

  void create_work_order(const std::string& me, std::mt19937& rng, figures& fig) {
    const auto id = pick(rng);
    if (!id) return;
    const bool fail = rng() % 10 == 0;
    try {
      db_.write([&](transaction& tx) {
        tx.exec("INSERT INTO work_orders(number, protocol_id) VALUES($1, $2)", issue(tx, "work_order", "OT", "2026"), *id);
        if (fail) throw simulated_rollback();
        tx.after_commit([&] { ++fig.work_orders; });
      }, as(me));
    } catch (const simulated_rollback&) {
      ++fig.rolled_back;
    }
  }

  // The user looks at the protocol, picks a new status (sometimes one the workflow does not allow),
  // and saves it; meanwhile others may have moved it on, which makes the save stale.
  void change_status(const std::string& me, std::mt19937& rng, figures& fig) {
    const auto id = pick(rng);
    if (!id) return;
    const auto seen = db_.read([&](transaction& tx) { return protocols.get(tx, *id); });
    const auto& from = seen.data.status;
    std::string to = all_states[rng() % all_states.size()];
    if (rng() % 4 != 0) { // mostly a legal next step
      std::vector<std::string> next;
      for (const auto& s : all_states) if (lifecycle.allows(from, s)) next.push_back(s);
      if (!next.empty()) to = next[rng() % next.size()];
    }
    if (to == from) return;
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500)); // the user thinks
    try {
      db_.write([&](transaction& tx) {
        const auto v = protocols.transition(tx, *id, lifecycle, from, to);
        tx.exec("INSERT INTO status_history(protocol_id, version, from_status, to_status, actor) VALUES($1, $2, $3, $4, $5)",
                *id, v, from, to, me);
        if (to == "reported")
          tx.exec("INSERT INTO reports(number, protocol_id) VALUES($1, $2)", issue(tx, "report", "INF", "2026"), *id);
        tx.after_commit([&, to] {
          ++fig.transitions;
          if (to == "reported") ++fig.reports;
        });
      }, as(me));
    } catch (const casecore::invalid_transition&) {
      ++(lifecycle.allows(from, to) ? fig.stale_refused : fig.illegal_refused);
    }
  }

  std::vector<std::int64_t> ids() {
    std::lock_guard lock(mutex_);
    return ids_;
  }

private:
  static casecore::write_options as(const std::string& me) {
    casecore::write_options o;
    o.actor = me;
    return o;
  }
  std::optional<std::int64_t> pick(std::mt19937& rng) {
    std::lock_guard lock(mutex_);
    if (ids_.empty()) return std::nullopt;
    return ids_[rng() % ids_.size()];
  }

  casecore::database& db_;
  std::mutex mutex_;
  std::vector<std::int64_t> ids_;
};

void office_hours(lab& l, int users, int rounds, figures& fig, bool show) {
  example::progress bar("office hours", static_cast<std::int64_t>(users) * rounds, show);
  std::vector<std::thread> threads;
  for (int u = 0; u < users; ++u) {
    threads.emplace_back([&, u] {
      const std::string me = "tech-" + std::to_string(u + 1);
      std::mt19937 rng(static_cast<unsigned>(u) * 104729u + 7);
      for (int i = 0; i < rounds; ++i) {
        const auto dice = rng() % 10;
        if (dice < 3 || i < 2) l.create_protocol(me, rng, fig);
        else if (dice < 5) l.create_work_order(me, rng, fig);
        else l.change_status(me, rng, fig);
        bar.add();
      }
    });
  }
  for (auto& t : threads) t.join();
}

struct pdf_figures {
  std::atomic<int> requests{0}, renders{0};
  std::mutex mutex;
  std::map<std::pair<std::int64_t, std::int64_t>, int> renders_per_version; // (protocol, version) -> renders
  std::set<std::pair<std::int64_t, std::int64_t>> requested;
};

// Rounds of report viewing: between rounds some protocols are edited (new version); within a round
// every user opens every sampled report at its current version.
void report_viewing(casecore::database& db, const std::vector<std::int64_t>& sample, int users, int rounds,
                    std::chrono::milliseconds render_cost, pdf_figures& pdf, bool show) {
  casecore::versioned_cache<std::int64_t, std::string> cache(4096);
  example::progress bar("report PDFs", static_cast<std::int64_t>(rounds) * users * static_cast<std::int64_t>(sample.size()), show);
  for (int round = 0; round < rounds; ++round) {
    if (round > 0) {
      for (std::size_t i = static_cast<std::size_t>(round) % 2; i < sample.size(); i += 2) {
        casecore::write_options o;
        o.actor = "reviewer";
        protocols.modify(db, sample[i], [&](protocol& p) { p.notes = "review " + std::to_string(round); }, o);
      }
    }
    std::vector<std::thread> threads;
    for (int u = 0; u < users; ++u) {
      threads.emplace_back([&, u] {
        std::mt19937 rng(static_cast<unsigned>(u * 31 + round));
        auto order = sample;
        std::shuffle(order.begin(), order.end(), rng);
        for (const auto id : order) {
          const auto rec = db.read([&](transaction& tx) { return protocols.get(tx, id); });
          {
            std::lock_guard lock(pdf.mutex);
            pdf.requested.insert({id, rec.version});
          }
          const auto bytes = cache.get(id, rec.version, [&] {
            std::this_thread::sleep_for(render_cost); // the expensive PDF render
            ++pdf.renders;
            std::lock_guard lock(pdf.mutex);
            ++pdf.renders_per_version[{id, rec.version}];
            return "%PDF " + rec.data.number + " v" + std::to_string(rec.version) + " status=" + rec.data.status;
          });
          if (bytes.find(rec.data.number) == std::string::npos) std::fprintf(stderr, "wrong PDF served\n");
          ++pdf.requests;
          bar.add();
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const auto s = cache.stats();
  std::printf("report PDFs: %d requests -> %d renders (%llu shared a render in flight, %llu cache hits)\n",
              pdf.requests.load(), pdf.renders.load(), static_cast<unsigned long long>(s.shared),
              static_cast<unsigned long long>(s.cache_hits));
}

// Reads every status history and replays it: each step must start where the previous ended, use a
// declared edge, and the last step must end in the stored status.
std::pair<std::int64_t, std::string> illegal_histories(casecore::database& db) {
  std::int64_t bad = 0;
  std::string first;
  db.read([&](transaction& tx) {
    std::map<std::int64_t, std::string> state;
    for (const auto& p : protocols.all(tx)) state[p.id] = "received";
    std::map<std::int64_t, std::int64_t> last_version;
    for (auto row : tx.exec("SELECT protocol_id, version, from_status, to_status FROM status_history ORDER BY protocol_id, version")) {
      const auto id = row.get<std::int64_t>(0);
      const auto v = row.get<std::int64_t>(1);
      const auto from = row.get<std::string>(2), to = row.get<std::string>(3);
      if (state[id] != from || !lifecycle.allows(from, to) || v <= last_version[id]) {
        ++bad;
        if (first.empty()) first = "protocol " + std::to_string(id) + ": " + from + " -> " + to;
      }
      state[id] = to;
      last_version[id] = v;
    }
    for (const auto& p : protocols.all(tx))
      if (state[p.id] != p.data.status) {
        ++bad;
        if (first.empty()) first = "protocol " + std::to_string(p.id) + " ends in " + p.data.status;
      }
  });
  return {bad, first};
}

} // namespace

int main(int argc, char** argv) {
  example::args a(argc, argv, "lab_protocols: AdLab's numbers, protocol workflow and report PDFs on casecore");
  const auto url = a.text("--db", "", "database URL (default: SQLite file in a scratch folder)");
  const bool fresh = a.flag("--fresh", "PostgreSQL: run in a new private schema; SQLite: delete the --db file first");
  const bool keep = a.flag("--keep", "keep the scratch folder (and schema) afterwards");
  const int users = static_cast<int>(a.number("--users", 8, 1, 64, "concurrent lab users"));
  const int rounds = static_cast<int>(a.number("--rounds", 60, 1, 100000, "actions per user"));
  const int pdf_rounds = static_cast<int>(a.number("--pdf-rounds", 3, 1, 100, "rounds of report viewing"));
  const int render_ms = static_cast<int>(a.number("--render-ms", 50, 0, 10000, "simulated PDF render time"));
  const bool show = !a.flag("--no-progress", "no progress bars");
  a.finish();

  try {
    example::environment env("lab_protocols", url, fresh, keep);
    auto& db = env.db();
    const auto steps = schema();
    casecore::migrate(db, steps);
    if (example::scalar(db, "SELECT count(*) FROM protocols") + example::scalar(db, "SELECT count(*) FROM issued_numbers") > 0) {
      std::fprintf(stderr, "lab_protocols: %s already holds a previous run; use --fresh\n", db.describe().c_str());
      return 2;
    }
    std::printf("lab_protocols on %s: %d users x %d actions\n", db.describe().c_str(), users, rounds);
    casecore::health::monitor health;
    health.add_database(db, "lab");

    lab l(db);
    figures fig;
    const auto t0 = std::chrono::steady_clock::now();
    office_hours(l, users, rounds, fig, show);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::printf("created: %d protocols, %d work orders, %d reports; %d creations rolled back on purpose (%lld ms)\n",
                fig.protocols.load(), fig.work_orders.load(), fig.reports.load(), fig.rolled_back.load(), static_cast<long long>(ms));
    std::printf("status changes: %d applied, %d stale refused (someone moved it first), %d illegal refused\n",
                fig.transitions.load(), fig.stale_refused.load(), fig.illegal_refused.load());
    db.read([&](transaction& tx) {
      for (auto row : tx.exec("SELECT kind, scope, min(number), max(number), count(*) FROM issued_numbers GROUP BY kind, scope ORDER BY kind, scope"))
        std::printf("  %-10s %s: %s .. %s (%lld)\n", row.get<std::string>(0).c_str(), row.get<std::string>(1).c_str(),
                    row.get<std::string>(2).c_str(), row.get<std::string>(3).c_str(), static_cast<long long>(row.get<std::int64_t>(4)));
    });

    auto ids = l.ids();
    std::sort(ids.begin(), ids.end());
    ids.resize(std::min<std::size_t>(ids.size(), 8));
    pdf_figures pdf;
    report_viewing(db, ids, users, pdf_rounds, std::chrono::milliseconds(render_ms), pdf, show);

    // --- pool metrics and health -----------------------------------------------------------------
    const auto p = db.pool_stats();
    const auto t = db.tx_stats();
    std::printf("pool: capacity %zu, opened %llu, in use %zu, waiting %zu, acquired %llu, timeouts %llu, mean wait %.1f us\n",
                p.capacity, static_cast<unsigned long long>(p.opened), p.in_use, p.waiting,
                static_cast<unsigned long long>(p.acquired), static_cast<unsigned long long>(p.timeouts),
                p.acquired ? static_cast<double>(p.acquire_wait_sum_us) / static_cast<double>(p.acquired) : 0.0);
    std::printf("transactions: %llu commits, %llu rollbacks, retries busy %llu / serialization %llu / deadlock %llu, conflicts %llu\n",
                static_cast<unsigned long long>(t.commits), static_cast<unsigned long long>(t.rollbacks),
                static_cast<unsigned long long>(t.retries_busy), static_cast<unsigned long long>(t.retries_serialization),
                static_cast<unsigned long long>(t.retries_deadlock), static_cast<unsigned long long>(t.conflicts));
    const auto h = health.check();
    std::printf("health: %s\n", std::string(casecore::health::to_string(h.overall)).c_str());
    for (const auto& f : h.findings) std::printf("  %s %s\n", std::string(casecore::health::to_string(f.level)).c_str(), f.reason.c_str());
    casecore::metrics::registry reg;
    reg.add_database(db, "lab");
    std::istringstream prom(reg.prometheus_text());
    for (std::string line; std::getline(prom, line);)
      if (line.rfind("casecore_pool_in_use", 0) == 0 || line.rfind("casecore_pool_capacity", 0) == 0) std::printf("  %s\n", line.c_str());

    // --- invariants ---------------------------------------------------------------------------------
    example::invariant_report rep;
    db.read([&](transaction& tx) {
      for (auto row : tx.exec("SELECT kind, scope, count(*), count(DISTINCT number), max(n) FROM issued_numbers GROUP BY kind, scope ORDER BY kind, scope")) {
        const auto kind = row.get<std::string>(0), scope = row.get<std::string>(1);
        const auto count = row.get<std::int64_t>(2), distinct = row.get<std::int64_t>(3), max = row.get<std::int64_t>(4);
        const auto current = casecore::counter::current(tx, kind, scope);
        rep.check("numbers unique and gapless: " + kind + " " + scope, count == distinct && count == max && max == current,
                  std::to_string(count) + " issued, " + std::to_string(distinct) + " distinct, max " + std::to_string(max) +
                      ", counter " + std::to_string(current));
      }
    });
    const auto committed = example::scalar(db, "SELECT count(*) FROM issued_numbers");
    rep.check("rolled-back creations left no number", committed == fig.protocols + fig.work_orders + fig.reports,
              example::eq(committed, fig.protocols + fig.work_orders + fig.reports) + " committed creations");
    const auto [bad, first] = illegal_histories(db);
    rep.check("every status history is legal", bad == 0, bad ? first : "replayed from 'received' to the stored status");
    const auto history = example::scalar(db, "SELECT count(*) FROM status_history");
    rep.check("every applied transition recorded once", history == fig.transitions, example::eq(history, fig.transitions));
    const auto reported = example::scalar(db, "SELECT count(*) FROM status_history WHERE to_status = 'reported'");
    const auto reports = example::scalar(db, "SELECT count(*) FROM reports");
    rep.check("one report per 'reported' transition", reports == reported, example::eq(reports, reported));
    int rendered_twice = 0;
    for (const auto& [k, n] : pdf.renders_per_version) rendered_twice += n > 1;
    rep.check("renders == distinct versions requested", pdf.renders == static_cast<int>(pdf.requested.size()) && rendered_twice == 0,
              example::eq(pdf.renders.load(), static_cast<long long>(pdf.requested.size())) + " for " +
                  std::to_string(pdf.requests.load()) + " requests");
    rep.check("pool: no acquisition timed out", p.timeouts == 0, std::to_string(p.timeouts) + " timeouts");
    rep.print();
    return rep.exit_code();
  } catch (const casecore::error& e) {
    std::fprintf(stderr, "lab_protocols: %s\n", e.what());
    return 2;
  }
}
