// The end of a casecore-torture run: finish what killed workers left behind, then check every
// invariant from the database (and the workers' ledgers against it).
#include "torture.hpp"

#include <casecore/counter.hpp>
#include <casecore/hash.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/outbox.hpp>
#include <casecore/ports/blob_store.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace torture {

using namespace casecore;

namespace {

struct op_row {
  std::string kind, k;
  std::int64_t n = 0;
};

// Records a violation: bumps its counter and keeps the first few examples of each kind.
void violation(report& out, const std::string& name, const std::string& example, std::int64_t n = 1) {
  out.invariants[name] += n;
  if (++out.figures["examples." + name] <= 3) out.problems.push_back(name + ": " + example);
}

write_options finishing() {
  write_options o;
  o.retry = long_retry();
  o.actor = "torture-parent";
  return o;
}

std::int64_t active_jobs(database& db, const std::string& run) {
  return db.read([&](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_jobs WHERE operation = $1 AND state IN ('queued', 'scheduled', 'running')",
                                      job_operation(run));
  });
}

// Runs the remaining stages of the jobs the parent claimed (recorded like a worker's).
std::size_t finish_jobs(database& db, const std::string& run, std::uint64_t& seq) {
  jobs::claim_options co;
  co.owner = "torture-parent";
  co.batch = 50;
  co.lease = std::chrono::milliseconds(20000);
  std::size_t done = 0;
  for (const auto& j : jobs::claim(db, co)) {
    const jobs::claim_ref ref{j.id, j.lease_epoch};
    if (j.operation != job_operation(run)) {
      jobs::release(db, ref);
      continue;
    }
    for (int s = j.current_stage; s < static_cast<int>(j.stages.size()); ++s) {
      db.write([&](transaction& tx) {
        jobs::complete_stage(tx, ref, s, tx.now_us());
        record_op(tx, run, "parent." + std::to_string(++seq), "stage", std::to_string(j.id) + ":" + std::to_string(s), j.id);
      }, finishing());
      ++done;
    }
  }
  return done;
}

void finish(database& db, const std::string& run, report& out) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  std::uint64_t seq = 0, stages = 0, delivered = 0;
  outbox::drain_options o;
  o.batch = 200;
  o.claim_ttl = std::chrono::milliseconds(5000);
  o.retry_delay = std::chrono::milliseconds(20);
  for (;;) {
    jobs::reclaim_expired(db);
    const auto s = finish_jobs(db, run, seq);
    const auto d = outbox::drain(db, outbox_topic(run), [&](const outbox::message& m) {
      db.write([&](transaction& tx) {
        tx.exec("INSERT INTO torture_delivered(run_id, msg_id, payload) VALUES ($1, $2, $3)", run, m.id, m.payload);
      }, finishing());
    }, o);
    stages += s;
    delivered += d;
    const auto jobs_left = active_jobs(db, run);
    const auto msgs_left = outbox::pending(db, outbox_topic(run));
    if (jobs_left == 0 && msgs_left == 0) break;
    if (std::chrono::steady_clock::now() > give_up) {
      violation(out, "jobs_left_unfinished", std::to_string(jobs_left) + " active jobs after 90 s", jobs_left);
      violation(out, "messages_left_undelivered", std::to_string(msgs_left) + " pending after 90 s", msgs_left);
      break;
    }
    // Claims of killed workers expire after their lease (2 s): wait for them.
    if (s == 0 && d == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  out.figures["finish.stages_completed_by_parent"] = stages;
  out.figures["finish.messages_delivered_by_parent"] = delivered;
}

std::multimap<std::string, op_row> load_ops(database& db, const std::string& run) {
  return db.read([&](transaction& tx) {
    std::multimap<std::string, op_row> ops;
    for (auto r : tx.exec("SELECT op_id, kind, k, n FROM torture_ops WHERE run_id = $1", run))
      ops.emplace(r.get<std::string>(0), op_row{r.get<std::string>(1), r.get<std::string>(2), r.get<std::int64_t>(3)});
    return ops;
  });
}

// Acknowledged ("A kind op k n [status]") and rolled-back ("R kind op") lines of every worker.
void check_ledgers(const std::filesystem::path& dir, const std::multimap<std::string, op_row>& ops, report& out,
                   std::map<std::string, int>& registered_told) {
  std::uint64_t acked = 0, rolled = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir / "ledger")) {
    std::ifstream in(f.path());
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string tag, kind, op, k, status;
      std::int64_t n = 0;
      ls >> tag >> kind >> op;
      const auto [lo, hi] = ops.equal_range(op);
      if (tag == "R") {
        ++rolled;
        if (lo != hi) violation(out, "rolled_back_writes_present", line);
        continue;
      }
      ls >> k >> n >> status;
      ++acked;
      if (lo == hi) violation(out, "acknowledged_writes_missing", line);
      else if (lo->second.kind != kind || lo->second.n != n) violation(out, "acknowledged_writes_altered", line);
      if (status == "registered") ++registered_told[k];
    }
  }
  out.figures["ledger.acknowledged"] = acked;
  out.figures["ledger.rolled_back_on_purpose"] = rolled;
}

void check_op_ids(const std::multimap<std::string, op_row>& ops, report& out) {
  for (auto it = ops.begin(); it != ops.end();) {
    const auto next = ops.upper_bound(it->first);
    if (std::distance(it, next) > 1) violation(out, "duplicate_op_ids", it->first);
    it = next;
  }
  out.invariants["duplicate_op_ids"] += 0;
}

std::vector<std::int64_t> numbers_of(const std::multimap<std::string, op_row>& ops, const std::string& kind) {
  std::vector<std::int64_t> v;
  for (const auto& [op, r] : ops)
    if (r.kind == kind) v.push_back(r.n);
  std::sort(v.begin(), v.end());
  return v;
}

void check_counters(database& db, const std::string& run, const std::multimap<std::string, op_row>& ops, report& out) {
  const auto g = numbers_of(ops, "gapless");
  std::int64_t dups = 0, gaps = 0, expect = 1;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (i && g[i] == g[i - 1]) {
      ++dups;
      violation(out, "gapless_duplicates", std::to_string(g[i]), 0);
      continue;
    }
    if (g[i] != expect) {
      gaps += g[i] - expect;
      violation(out, "gapless_gaps", "missing " + std::to_string(expect) + ".." + std::to_string(g[i] - 1), 0);
    }
    expect = g[i] + 1;
  }
  out.invariants["gapless_duplicates"] = dups;
  out.invariants["gapless_gaps"] = gaps;
  const auto current = db.read([&](transaction& tx) { return counter::current(tx, "torture.gapless", counter_scope(run)); });
  out.invariants["gapless_counter_mismatch"] = current == expect - 1 ? 0 : 1;
  if (current != expect - 1)
    out.problems.push_back("gapless counter is at " + std::to_string(current) + ", numbers used end at " + std::to_string(expect - 1));
  out.figures["gapless.numbers"] = g.size();

  const auto u = numbers_of(ops, "unique");
  std::int64_t udups = 0;
  for (std::size_t i = 1; i < u.size(); ++i)
    if (u[i] == u[i - 1]) ++udups;
  out.invariants["unique_duplicates"] = udups;
  out.figures["unique.numbers"] = u.size();
}

void check_hot_rows(database& db, const std::string& run, const std::multimap<std::string, op_row>& ops, report& out) {
  std::map<std::int64_t, std::int64_t> writes, sums;
  for (const auto& [op, r] : ops)
    if (r.kind == "modify" || r.kind == "delta") {
      const auto id = std::stoll(r.k);
      ++writes[id];
      sums[id] += r.n;
    }
  std::int64_t lost = 0, below_zero = 0, version_skew = 0;
  const auto rows = db.read([&](transaction& tx) { return hot_repository().find_by(tx, "run_id", run); });
  for (const auto& r : rows) {
    const auto expected = r.data.role == 0 ? sums[r.id] : initial_balance + sums[r.id];
    const auto actual = r.data.role == 0 ? r.data.value : r.data.balance;
    if (actual != expected) {
      lost += std::abs(actual - expected);
      violation(out, "lost_updates", "row " + std::to_string(r.id) + " is " + std::to_string(actual) + ", committed writes say " +
                                         std::to_string(expected), 0);
    }
    if (r.data.balance < 0) violation(out, "balance_below_zero", "row " + std::to_string(r.id));
    if (r.version != 1 + writes[r.id]) {
      ++version_skew;
      violation(out, "version_mismatch", "row " + std::to_string(r.id) + " version " + std::to_string(r.version) + " after " +
                                             std::to_string(writes[r.id]) + " writes", 0);
    }
  }
  out.invariants["lost_updates"] = lost;
  out.invariants["balance_below_zero"] += below_zero;
  out.invariants["version_mismatch"] = version_skew;
}

void check_files(database& db, const worker_config& cfg, const std::multimap<std::string, op_row>& ops,
                 const std::map<std::string, int>& registered_told, report& out) {
  struct file_row {
    std::string sha, name, blob;
  };
  std::map<std::int64_t, file_row> rows;
  std::map<std::pair<std::string, std::string>, int> per_key;
  db.read([&](transaction& tx) {
    for (auto r : tx.exec("SELECT id, sha256, original_name, blob_key FROM casecore_files WHERE case_id = $1", case_id(cfg.run))) {
      rows[r.get<std::int64_t>(0)] = {r.get<std::string>(1), r.get<std::string>(2), r.get<std::string>(3)};
      ++per_key[{r.get<std::string>(1), r.get<std::string>(2)}];
    }
  });
  std::int64_t dup_rows = 0, missing_blobs = 0, wrong = 0, told_twice = 0;
  for (const auto& [key, n] : per_key) dup_rows += n - 1;
  auto store = open_blob_store(cfg, db);
  for (const auto& [id, r] : rows)
    if (!store->exists(r.blob)) {
      ++missing_blobs;
      violation(out, "file_blobs_missing", "file " + std::to_string(id), 0);
    }
  std::map<std::string, std::set<std::int64_t>> ids_per_key;
  for (const auto& [op, r] : ops)
    if (r.kind == "file") ids_per_key[r.k].insert(r.n);
  for (const auto& [key, ids] : ids_per_key) {
    const int c = std::stoi(key.substr(0, key.find(':')));
    const int nm = std::stoi(key.substr(key.find(':') + 1));
    const auto it = rows.find(*ids.begin());
    if (ids.size() != 1 || it == rows.end() || it->second.sha != sha256_hex(file_content(c)) || it->second.name != file_name(nm)) {
      ++wrong;
      violation(out, "file_registrations_inconsistent", "key " + key, 0);
    }
  }
  for (const auto& [key, n] : registered_told)
    if (n > 1) {
      told_twice += n - 1;
      violation(out, "file_registered_twice", "key " + key, 0);
    }
  if (rows.size() != ids_per_key.size()) violation(out, "file_rows_unaccounted", std::to_string(rows.size()) + " rows", 0);
  out.invariants["file_duplicate_rows"] = dup_rows;
  out.invariants["file_blobs_missing"] = missing_blobs;
  out.invariants["file_registrations_inconsistent"] = wrong;
  out.invariants["file_registered_twice"] = told_twice;
  out.invariants["file_rows_unaccounted"] = rows.size() == ids_per_key.size() ? 0 : 1;
  out.figures["files.rows"] = rows.size();
}

void check_fencing(database& db, const std::string& run, report& out) {
  std::int64_t interleaved = 0, seq_gaps = 0, writes = 0;
  std::set<std::int64_t> tokens;
  for (int i = 0; i < lease_names; ++i) {
    const auto name = lease_name(run, i);
    db.read([&](transaction& tx) {
      std::int64_t expect = 1, last_token = 0, last_end = 0;
      for (auto r : tx.exec("SELECT seq, token, start_us, end_us FROM torture_fenced WHERE run_id = $1 AND name = $2 ORDER BY seq",
                            run, name)) {
        const auto seq = r.get<std::int64_t>(0), token = r.get<std::int64_t>(1);
        const auto start = r.get<std::int64_t>(2), end = r.get<std::int64_t>(3);
        ++writes;
        tokens.insert(token);
        if (seq != expect) ++seq_gaps;
        expect = seq + 1;
        // In write order, tokens never go back, and a new holder's write starts after the last one ended.
        if (token < last_token || (token != last_token && start < last_end)) {
          ++interleaved;
          violation(out, "fenced_writes_interleaved", name + " seq " + std::to_string(seq) + " token " + std::to_string(token) +
                                                          " after token " + std::to_string(last_token), 0);
        }
        last_token = token;
        last_end = end;
      }
      if (tx.query_one<std::int64_t>("SELECT seq FROM torture_fence WHERE run_id = $1 AND name = $2", run, name) != expect - 1)
        ++seq_gaps;
    });
  }
  out.invariants["fenced_writes_interleaved"] = interleaved;
  out.invariants["fenced_write_order_gaps"] = seq_gaps;
  out.figures["fenced.writes"] = writes;
  out.figures["fenced.holders"] = tokens.size();
}

void check_jobs(database& db, const std::string& run, const std::multimap<std::string, op_row>& ops, report& out) {
  std::map<std::int64_t, std::string> state;
  std::map<std::int64_t, std::int64_t> superseded_by; // a run that had to go back to waiting while a newer job of its key waited
  std::map<std::int64_t, std::string> last_error;     // for the violation message
  db.read([&](transaction& tx) {
    for (auto r : tx.exec("SELECT id, state, last_error FROM casecore_jobs WHERE operation = $1", job_operation(run))) {
      state[r.get<std::int64_t>(0)] = r.get<std::string>(1);
      const auto err = r.get<std::string>(2);
      last_error[r.get<std::int64_t>(0)] = err;
      if (const auto at = err.find("superseded by job "); at != std::string::npos)
        superseded_by[r.get<std::int64_t>(0)] = std::stoll(err.substr(at + 18));
    }
  });
  std::map<std::string, int> done;
  std::set<std::int64_t> enqueued;
  for (const auto& [op, r] : ops) {
    if (r.kind == "stage") ++done[r.k];
    if (r.kind == "enqueue") enqueued.insert(r.n);
  }
  std::int64_t not_succeeded = 0, missing = 0, twice = 0, lost = 0;
  for (const auto& [id, st] : state) {
    // Superseding can chain (X by Y while Y waited, then Y by Z when Y's run was lost while Z
    // waited): X's work is done when the newest job of the chain succeeded.
    bool replaced = false;
    if (st == "cancelled") {
      auto at = id;
      for (std::size_t hops = 0; hops <= superseded_by.size(); ++hops) {
        const auto sup = superseded_by.find(at);
        if (sup == superseded_by.end() || !state.count(sup->second)) break;
        at = sup->second;
        if (state.at(at) == "succeeded") {
          replaced = true;
          break;
        }
        if (state.at(at) != "cancelled") break;
      }
    }
    if (st != "succeeded" && !replaced) {
      ++not_succeeded;
      violation(out, "jobs_not_succeeded", "job " + std::to_string(id) + " is " + st + " (last error: " + last_error[id].substr(0, 200) + ")", 0);
    }
    for (std::size_t s = 0; s < job_stages.size(); ++s) {
      const auto key = std::to_string(id) + ":" + std::to_string(s);
      const auto n = done.count(key) ? done[key] : 0;
      if (n == 0 && st == "succeeded") {
        ++missing;
        violation(out, "job_stages_not_done", key, 0);
      }
      if (n > 1) {
        twice += n - 1;
        violation(out, "job_stages_done_twice", key, 0);
      }
    }
  }
  for (const auto id : enqueued)
    if (!state.count(id)) {
      ++lost;
      violation(out, "jobs_lost", "job " + std::to_string(id), 0);
    }
  out.invariants["jobs_not_succeeded"] = not_succeeded;
  out.invariants["job_stages_not_done"] = missing;
  out.invariants["job_stages_done_twice"] = twice;
  out.invariants["jobs_lost"] = lost;
  out.figures["jobs.created"] = state.size();
  out.figures["jobs.stages_done_exactly_once"] = static_cast<std::uint64_t>(std::count_if(done.begin(), done.end(), [](auto& p) { return p.second == 1; }));
}

void check_outbox(database& db, const std::string& run, const std::multimap<std::string, op_row>& ops, report& out) {
  std::map<std::int64_t, std::string> published; // message id -> op id
  std::set<std::string> publish_ops;
  for (const auto& [op, r] : ops)
    if (r.kind == "publish") {
      published[r.n] = op;
      publish_ops.insert(op);
    }
  std::map<std::int64_t, int> deliveries;
  std::int64_t phantom = 0, undelivered = 0, redelivered = 0;
  db.read([&](transaction& tx) {
    for (auto r : tx.exec("SELECT msg_id, payload FROM torture_delivered WHERE run_id = $1", run)) {
      const auto id = r.get<std::int64_t>(0);
      const auto payload = r.get<std::string>(1);
      const auto it = published.find(id);
      if (it == published.end() || it->second != payload || !publish_ops.count(payload)) {
        ++phantom;
        violation(out, "messages_of_rolled_back_txs_delivered", "message " + std::to_string(id) + " " + payload, 0);
      }
      if (++deliveries[id] > 1) ++redelivered;
    }
  });
  for (const auto& [id, op] : published)
    if (!deliveries.count(id)) {
      ++undelivered;
      violation(out, "committed_messages_undelivered", "message " + std::to_string(id), 0);
    }
  out.invariants["messages_of_rolled_back_txs_delivered"] = phantom;
  out.invariants["committed_messages_undelivered"] = undelivered;
  out.figures["outbox.published"] = published.size();
  out.figures["outbox.redelivered"] = static_cast<std::uint64_t>(redelivered);
}

} // namespace

void finish_and_check(database& db, const worker_config& cfg, report& out) {
  finish(db, cfg.run, out);
  const auto ops = load_ops(db, cfg.run);
  std::map<std::string, int> registered_told;
  out.invariants["acknowledged_writes_missing"] = 0;
  out.invariants["acknowledged_writes_altered"] = 0;
  out.invariants["rolled_back_writes_present"] = 0;
  check_ledgers(cfg.dir, ops, out, registered_told);
  check_op_ids(ops, out);
  check_counters(db, cfg.run, ops, out);
  check_hot_rows(db, cfg.run, ops, out);
  check_files(db, cfg, ops, registered_told, out);
  check_fencing(db, cfg.run, out);
  check_jobs(db, cfg.run, ops, out);
  check_outbox(db, cfg.run, ops, out);
  for (const auto& [op, r] : ops) ++out.figures["committed." + r.kind];
}

} // namespace torture
