// One worker process of casecore-torture: T threads mixing every operation until the deadline.
//
// Each operation is one unit of work that also records a torture_ops row; only after the write
// returned is the ledger line appended. Transient failures that outlive the unit of work's own
// retries (a server restart, a dropped connection while reconnecting) are waited out here and the
// thread moves on: the operation was not acknowledged, and its transaction did not commit.
#include "torture.hpp"

#include <casecore/counter.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>
#include <casecore/testing/faults.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

namespace torture {

using namespace casecore;

namespace {

/// Thrown inside a unit of work to roll it back on purpose.
struct rollback_on_purpose {};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class worker {
public:
  worker(const worker_config& cfg, database db, std::shared_ptr<testing::fault_injector> faults)
      : cfg_(cfg), db_(std::move(db)), faults_(std::move(faults)),
        ledger_(cfg.dir / "ledger" / (std::to_string(::getpid()) + ".log")),
        blobs_(open_blob_store(cfg, db_)), files_(db_, *blobs_) {}

  void load_rows() {
    retrying("setup", [&] {
      db_.read([&](transaction& tx) {
        for (const auto& r : hot_repository().find_by(tx, "run_id", cfg_.run))
          (r.data.role == 0 ? modify_ids_ : delta_ids_).push_back(r.id);
      });
    });
    if (modify_ids_.empty() || delta_ids_.empty()) raise(errc::not_found, "run " + cfg_.run + " has no hot rows");
  }

  void thread_main(int t) {
    std::mt19937_64 rng(cfg_.seed * 1000003 + static_cast<std::uint64_t>(cfg_.index) * 1009 + static_cast<std::uint64_t>(t));
    std::uint64_t seq = 0;
    while (now_ms() < cfg_.deadline_ms) {
      const auto pick = std::uniform_int_distribution<int>(0, 99)(rng);
      retrying(kind_of(pick), [&] {
        // A fresh id per attempt: an attempt that failed half-way may have committed some of its writes.
        const std::string op = std::to_string(::getpid()) + "." + std::to_string(t) + "." + std::to_string(++seq);
        run_one(pick, op, rng);
      });
    }
  }

  void save_stats() {
    const auto tx = db_.tx_stats();
    st_.set("db.commits", tx.commits);
    st_.set("db.retries", tx.retries_busy + tx.retries_serialization + tx.retries_deadlock + tx.retries_connection +
                              tx.retries_pool_timeout);
    st_.set("db.outcome_unknown", tx.outcome_unknown);
    st_.set("db.conflicts", tx.conflicts);
    if (faults_) {
      const auto f = faults_->counts();
      st_.set("faults.busy", f.busy);
      st_.set("faults.serialization", f.serialization);
      st_.set("faults.disconnect", f.disconnect);
    }
    st_.save(cfg_.dir / "stats" / (std::to_string(::getpid()) + ".txt"));
  }

  std::uint64_t unexpected() const {
    auto s = st_.snapshot();
    return s["errors.unexpected"];
  }

private:
  static const char* kind_of(int pick) {
    if (pick < 14) return "gapless";
    if (pick < 22) return "unique";
    if (pick < 34) return "modify";
    if (pick < 46) return "delta";
    if (pick < 54) return "file";
    if (pick < 62) return "lease";
    if (pick < 72) return "enqueue";
    if (pick < 82) return "work";
    if (pick < 92) return "publish";
    return "drain";
  }

  void run_one(int pick, const std::string& op, std::mt19937_64& rng) {
    const std::string kind = kind_of(pick);
    if (kind == "gapless") gapless(op, rng);
    else if (kind == "unique") unique(op);
    else if (kind == "modify") modify(op, rng);
    else if (kind == "delta") delta(op, rng);
    else if (kind == "file") file(op, rng);
    else if (kind == "lease") fenced(op, rng);
    else if (kind == "enqueue") enqueue(op, rng);
    else if (kind == "work") work(op, rng);
    else if (kind == "publish") publish(op, rng);
    else drain();
  }

  // Runs f; classifies failures. Transient ones (outliving the unit of work's retries, e.g. a
  // server restart) are waited out and f is run again with a fresh unit of work.
  template <class F> void retrying(const std::string& kind, F&& f) {
    for (int round = 0;; ++round) {
      try {
        f();
        return;
      } catch (const rollback_on_purpose&) {
        return; // recorded by the operation
      } catch (const error& e) {
        if (e.code() == errc::outcome_unknown) {
          st_.add("ops.outcome_unknown." + kind);
          return;
        }
        if (e.conflict()) {
          st_.add("conflicts." + kind);
          return;
        }
        if (e.code() == errc::constraint_violation && kind == "delta") {
          st_.add("refused.delta");
          return;
        }
        const bool transient = e.retryable() || e.code() == errc::backend_unavailable || e.code() == errc::timeout;
        if (!transient || round >= 120 || now_ms() > cfg_.deadline_ms + 30000) {
          st_.add("errors.unexpected");
          std::cerr << "torture worker " << ::getpid() << ": " << kind << ": " << e.what() << "\n";
          return;
        }
        st_.add("retries.outer");
        std::this_thread::sleep_for(std::chrono::milliseconds(100 + 50 * std::min(round, 10)));
      }
    }
  }

  write_options wo() const {
    write_options o;
    o.retry = long_retry();
    o.actor = "torture-" + std::to_string(cfg_.index);
    return o;
  }

  void ack(const std::string& text, const std::string& kind) {
    ledger_.line(text);
    st_.add("ops." + kind);
  }

  void rolled_back(const std::string& kind, const std::string& op) {
    ledger_.line("R " + kind + " " + op);
    st_.add("rolled_back." + kind);
  }

  template <class T> T pick_of(const std::vector<T>& v, std::mt19937_64& rng) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  }

  // In-transaction gapless number; one in ten transactions rolls back after taking it.
  void gapless(const std::string& op, std::mt19937_64& rng) {
    const bool abort = rng() % 10 == 0;
    try {
      const auto n = db_.write([&](transaction& tx) {
        const auto num = counter::next(tx, "torture.gapless", counter_scope(cfg_.run));
        record_op(tx, cfg_.run, op, "gapless", "", num);
        if (abort) throw rollback_on_purpose{};
        return num;
      }, wo());
      ack("A gapless " + op + " - " + std::to_string(n), "gapless");
    } catch (const rollback_on_purpose&) {
      rolled_back("gapless", op);
    }
  }

  // Standalone number (unique, not gapless), then recorded.
  void unique(const std::string& op) {
    const auto n = counter::next(db_, "torture.unique", counter_scope(cfg_.run));
    db_.write([&](transaction& tx) { record_op(tx, cfg_.run, op, "unique", "", n); }, wo());
    ack("A unique " + op + " - " + std::to_string(n), "unique");
  }

  void modify(const std::string& op, std::mt19937_64& rng) {
    const auto id = pick_of(modify_ids_, rng);
    db_.write([&](transaction& tx) {
      hot_repository().modify(tx, id, [](hot_row& h) { ++h.value; });
      record_op(tx, cfg_.run, op, "modify", std::to_string(id), 1);
    }, wo());
    ack("A modify " + op + " " + std::to_string(id) + " 1", "modify");
  }

  void delta(const std::string& op, std::mt19937_64& rng) {
    const auto id = pick_of(delta_ids_, rng);
    const auto d = std::uniform_int_distribution<std::int64_t>(-6, 5)(rng);
    db_.write([&](transaction& tx) {
      const auto now = hot_repository().add(tx, id, "balance", d, {0, std::nullopt});
      if (now < 0) raise(errc::internal, "bounded delta went below zero");
      record_op(tx, cfg_.run, op, "delta", std::to_string(id), d);
    }, wo());
    ack("A delta " + op + " " + std::to_string(id) + " " + std::to_string(d), "delta");
  }

  void file(const std::string& op, std::mt19937_64& rng) {
    const int c = static_cast<int>(rng() % file_contents);
    const int nm = static_cast<int>(rng() % file_names);
    std::istringstream in(file_content(c));
    const auto staged = files_.stage(in); // outside the transaction: it has side effects
    const std::string key = std::to_string(c) + ":" + std::to_string(nm);
    const auto reg = db_.write([&](transaction& tx) {
      auto r = files_.register_staged(tx, case_id(cfg_.run), staged, file_name(nm));
      record_op(tx, cfg_.run, op, "file", key, r.id);
      return r;
    }, wo());
    const char* status = reg.status == registration_status::registered ? "registered" : "duplicate";
    ack("A file " + op + " " + key + " " + std::to_string(reg.id) + " " + status, "file");
  }

  // Take a lease and make a few guarded writes; sometimes pause past the TTL (a stalled holder).
  void fenced(const std::string& op, std::mt19937_64& rng) {
    const auto name = lease_name(cfg_.run, static_cast<int>(rng() % lease_names));
    const auto owner = "w" + std::to_string(::getpid()) + "." + op;
    const auto g = lease::try_acquire(db_, name, owner, std::chrono::milliseconds(300));
    if (!g) {
      st_.add("lease.busy");
      return;
    }
    st_.add("lease.acquired");
    const int writes = 1 + static_cast<int>(rng() % 4);
    for (int w = 0; w < writes; ++w) {
      if (rng() % 12 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(350)); // paused past the TTL
      const std::string wop = op + "." + std::to_string(w);
      const auto seq = db_.write([&](transaction& tx) {
        lease::check(tx, name, g->token);
        auto r = tx.exec("UPDATE torture_fence SET seq = seq + 1 WHERE run_id = $1 AND name = $2 "
                         "RETURNING seq, casecore_now_us()", cfg_.run, name);
        const auto s = r[0].get<std::int64_t>(0);
        const auto start = r[0].get<std::int64_t>(1);
        const auto end = tx.now_us();
        tx.exec("INSERT INTO torture_fenced(run_id, name, seq, token, start_us, end_us) VALUES ($1, $2, $3, $4, $5, $6)",
                cfg_.run, name, s, g->token, start, end);
        record_op(tx, cfg_.run, wop, "fenced", name, s);
        return s;
      }, wo());
      ack("A fenced " + wop + " " + name + " " + std::to_string(seq), "fenced");
    }
    lease::release(db_, *g);
  }

  void enqueue(const std::string& op, std::mt19937_64& rng) {
    jobs::job_spec spec;
    spec.operation = job_operation(cfg_.run);
    spec.subject = "s" + std::to_string(rng() % job_subjects);
    spec.stages = job_stages;
    spec.max_attempts = 1000;
    const bool abort = rng() % 10 == 0;
    try {
      const auto e = db_.write([&](transaction& tx) {
        auto r = jobs::enqueue(tx, spec);
        record_op(tx, cfg_.run, op, "enqueue", spec.subject, r.id);
        if (abort) throw rollback_on_purpose{};
        return r;
      }, wo());
      ack("A enqueue " + op + " " + spec.subject + " " + std::to_string(e.id), "enqueue");
      if (!e.created) st_.add("enqueue.deduplicated");
    } catch (const rollback_on_purpose&) {
      rolled_back("enqueue", op);
    }
  }

  // Claim a few jobs and run their stages; each stage completion is fenced by the claim's epoch and
  // recorded in the same transaction. Sometimes a stage fails (retried later from that stage).
  void work(const std::string& op, std::mt19937_64& rng) {
    jobs::claim_options co;
    co.owner = "w" + std::to_string(::getpid());
    co.batch = 3;
    co.lease = std::chrono::milliseconds(2000);
    for (const auto& j : jobs::claim(db_, co)) {
      const jobs::claim_ref ref{j.id, j.lease_epoch};
      if (j.operation != job_operation(cfg_.run)) {
        jobs::release(db_, ref); // not ours: another run's job on the same database
        continue;
      }
      for (int s = j.current_stage; s < static_cast<int>(j.stages.size()); ++s) {
        if (rng() % 40 == 0) {
          jobs::fail(db_, ref, s, "injected stage failure", {std::chrono::milliseconds(10), std::chrono::milliseconds(100)});
          st_.add("jobs.stage_failed");
          break;
        }
        const std::string sop = op + "." + std::to_string(j.id) + "." + std::to_string(s);
        const std::string key = std::to_string(j.id) + ":" + std::to_string(s);
        db_.write([&](transaction& tx) {
          jobs::complete_stage(tx, ref, s, tx.now_us());
          record_op(tx, cfg_.run, sop, "stage", key, j.id);
        }, wo());
        ack("A stage " + sop + " " + key + " " + std::to_string(j.id), "stage");
      }
    }
  }

  void publish(const std::string& op, std::mt19937_64& rng) {
    const bool abort = rng() % 10 == 0;
    try {
      const auto id = db_.write([&](transaction& tx) {
        const auto m = outbox::publish(tx, outbox_topic(cfg_.run), op);
        record_op(tx, cfg_.run, op, "publish", "", m);
        if (abort) throw rollback_on_purpose{};
        return m;
      }, wo());
      ack("A publish " + op + " - " + std::to_string(id), "publish");
    } catch (const rollback_on_purpose&) {
      rolled_back("publish", op);
    }
  }

  void drain() {
    outbox::drain_options o;
    o.batch = 20;
    o.claim_ttl = std::chrono::milliseconds(2000);
    o.retry_delay = std::chrono::milliseconds(50);
    const auto n = outbox::drain(db_, outbox_topic(cfg_.run), [&](const outbox::message& m) {
      db_.write([&](transaction& tx) {
        tx.exec("INSERT INTO torture_delivered(run_id, msg_id, payload) VALUES ($1, $2, $3)", cfg_.run, m.id, m.payload);
      }, wo());
    }, o);
    st_.add("ops.delivered", n);
  }

  const worker_config& cfg_;
  database db_;
  std::shared_ptr<testing::fault_injector> faults_;
  ledger ledger_;
  std::unique_ptr<blob_store> blobs_;
  file_registry files_;
  std::vector<std::int64_t> modify_ids_, delta_ids_;
  stats st_;
};

database open_worker_db(const worker_config& cfg, std::shared_ptr<testing::fault_injector>& faults) {
  database_options o;
  o.retry = long_retry();
  o.pool.size = static_cast<std::size_t>(cfg.threads) + 2;
  o.pool.acquire_timeout = std::chrono::milliseconds(30000);
  if (cfg.fault_rate <= 0) return open(cfg.url, o);
  testing::fault_options f;
  f.busy_rate = f.serialization_rate = f.disconnect_rate = cfg.fault_rate;
  f.seed = cfg.seed ? cfg.seed + static_cast<std::uint64_t>(cfg.index) : 0;
  faults = std::make_shared<testing::fault_injector>(f);
  return testing::open_with_faults(cfg.url, faults, o);
}

} // namespace

int run_worker(const worker_config& cfg) {
  std::shared_ptr<testing::fault_injector> faults;
  std::optional<database> db;
  // The server may be restarting right now: keep trying to open it until the deadline.
  for (;;) {
    try {
      db.emplace(open_worker_db(cfg, faults));
      break;
    } catch (const error& e) {
      if (e.code() != errc::backend_unavailable || now_ms() > cfg.deadline_ms) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  worker w(cfg, *db, faults);
  w.load_rows();
  std::atomic<bool> done{false};
  std::thread saver([&] {
    while (!done.load()) {
      w.save_stats();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < cfg.threads; ++t) threads.emplace_back([&, t] { w.thread_main(t); });
  for (auto& t : threads) t.join();
  done = true;
  saver.join();
  w.save_stats();
  return w.unexpected() == 0 ? 0 : 1;
}

} // namespace torture
