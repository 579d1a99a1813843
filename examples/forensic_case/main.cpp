// forensic_case: caseScope (seeds 000, 001, 003) rebuilt on casecore.
//
// Several investigators upload overlapping evidence files into cases at the same time; each new file
// gets one job that runs the pipeline count -> index -> rule hunting -> IOC hunting on a worker pool
// that never runs two jobs of one case at once; a bulk re-index of a case is guarded by a lease with
// a fencing token; IOCs are edited concurrently with optimistic versions; the index is searched at
// the end. The invariant report is computed from the database and the search index.
//
//   forensic_case [--db URL] [--fresh] [--keep] [--users N] [--cases N] [--files N] [--lines N]
//                 [--workers N] [--no-progress]
#include "../common/args.hpp"
#include "../common/progress.hpp"
#include "../common/setup.hpp"

#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/migration.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/ports/search_index.hpp>
#include <casecore/sqlite/search_index.hpp>
#include <casecore/repository.hpp>
#include <casecore/worker.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using casecore::transaction;

namespace {

// --- the domain ---------------------------------------------------------------------------------

struct ioc {
  std::string case_id;
  std::string value;
  std::string note;
  std::int64_t edits = 0;
};

const casecore::repository<ioc> iocs({"iocs", "id",
                                      {casecore::column("case_id", &ioc::case_id), casecore::column("value", &ioc::value),
                                       casecore::column("note", &ioc::note), casecore::column("edits", &ioc::edits)}});

std::vector<casecore::migration> schema() {
  return {iocs.create_table_migration("forensic_case", 1),
          {"forensic_case", 2, "pipeline bookkeeping",
           // One row per (job, stage) written inside ctx.complete(): the primary key would refuse a
           // second run, and the report counts them.
           "CREATE TABLE stage_runs(job_id BIGINT NOT NULL, stage TEXT NOT NULL, case_id TEXT NOT NULL,"
           " started_us BIGINT NOT NULL, finished_us BIGINT NOT NULL, PRIMARY KEY(job_id, stage));"
           "CREATE TABLE file_stats(file_id BIGINT PRIMARY KEY, events BIGINT NOT NULL, indexed BIGINT NOT NULL DEFAULT 0,"
           " rule_hits BIGINT NOT NULL DEFAULT 0, ioc_hits BIGINT NOT NULL DEFAULT 0);"
           "CREATE TABLE ioc_edits(ioc_id BIGINT NOT NULL, version BIGINT NOT NULL, actor TEXT NOT NULL, PRIMARY KEY(ioc_id, version));"
           "CREATE TABLE reindex_log(id {{id}}, case_id TEXT NOT NULL, owner TEXT NOT NULL, token BIGINT NOT NULL, docs BIGINT NOT NULL)",
           "", ""}};
}

const casecore::jobs::pipeline casescope{{{"full", {"count", "index", "rules", "iocs"}}}};
const std::vector<std::string> ioc_values{"evil.example.com", "185.220.101.7", "mimikatz.exe"};

// --- generated evidence ---------------------------------------------------------------------------

struct evidence {
  std::string case_id;
  std::string name;
  std::filesystem::path path;
};

// Lines of a fake event log: every 7th runs encoded PowerShell (a rule hit), every 11th touches an IOC.
std::string make_log(const std::string& host, int lines) {
  std::ostringstream out;
  for (int i = 0; i < lines; ++i) {
    out << "event " << i << " host=" << host << " user=u" << i % 5;
    if (i % 7 == 3) out << " proc=powershell -enc SQBFAFgA";
    if (i % 11 == 5) out << " dst=" << ioc_values[static_cast<std::size_t>(i) % ioc_values.size()];
    out << '\n';
  }
  return out.str();
}

// Per case: `files` logs of its own, one playbook identical in every case (same hash, other cases)
// and a copy of the first log under another name (same hash, same case, other name).
std::vector<evidence> make_evidence(const std::filesystem::path& dir, int cases, int files, int lines) {
  std::vector<evidence> out;
  const auto write = [&](const std::string& case_id, const std::string& name, const std::string& content) {
    auto p = dir / (case_id + "_" + name);
    std::ofstream(p, std::ios::binary) << content;
    out.push_back({case_id, name, p});
  };
  const std::string playbook = make_log("PLAYBOOK", lines / 2 + 1);
  for (int c = 1; c <= cases; ++c) {
    const auto case_id = "case-" + std::to_string(c);
    for (int f = 0; f < files; ++f) {
      const auto log = make_log("WS" + std::to_string(c) + "-" + std::to_string(f), lines + f * 3);
      write(case_id, "host" + std::to_string(f) + "_Security.evtx", log);
      if (f == 0) write(case_id, "copy of host0_Security.evtx", log);
    }
    write(case_id, "ir_playbook.txt", playbook);
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::int64_t file_id_of(const casecore::jobs::job& j) { return std::stoll(j.subject.substr(5)); } // "file:<id>"

std::vector<casecore::search_document> documents_of(std::int64_t file_id, const std::string& content) {
  std::vector<casecore::search_document> docs;
  const auto lines = split_lines(content);
  for (std::size_t i = 0; i < lines.size(); ++i)
    docs.push_back({casecore::event_id(file_id, std::to_string(i)), file_id, lines[i]});
  return docs;
}

// --- the pipeline ---------------------------------------------------------------------------------

struct pipeline_env {
  casecore::blob_store& blobs;
  casecore::search_index& index;
  std::atomic<std::int64_t> stages_done{0};
};

// Runs one stage: `work` computes the stage's effect outside any transaction (it may run again if
// the worker dies), `record` writes it together with the stage completion: exactly once.
void run_stage(pipeline_env& env, casecore::jobs::job_context& ctx,
               const std::function<std::function<void(transaction&)>(const std::string& content)>& work) {
  const auto started = example::steady_us();
  const auto& j = ctx.current();
  const auto record = work(env.blobs.get(j.payload));
  std::this_thread::sleep_for(3ms); // simulated parsing cost: makes overlapping jobs of one case visible
  ctx.complete([&](transaction& tx) {
    record(tx);
    tx.exec("INSERT INTO stage_runs(job_id, stage, case_id, started_us, finished_us) VALUES($1, $2, $3, $4, $5)", j.id,
            ctx.stage(), j.concurrency_key, started, example::steady_us());
  });
  env.stages_done.fetch_add(1);
}

void register_handlers(casecore::jobs::worker& w, pipeline_env& env) {
  w.on_stage("count", [&](casecore::jobs::job_context& ctx) {
    run_stage(env, ctx, [&](const std::string& content) {
      const auto n = static_cast<std::int64_t>(split_lines(content).size());
      const auto id = file_id_of(ctx.current());
      return [n, id](transaction& tx) { tx.exec("INSERT INTO file_stats(file_id, events) VALUES($1, $2)", id, n); };
    });
  });
  w.on_stage("index", [&](casecore::jobs::job_context& ctx) {
    run_stage(env, ctx, [&](const std::string& content) {
      const auto id = file_id_of(ctx.current());
      const auto docs = documents_of(id, content);
      env.index.index(docs); // deterministic ids: a repeated run replaces, never duplicates
      const auto n = static_cast<std::int64_t>(docs.size());
      return [n, id](transaction& tx) { tx.exec("UPDATE file_stats SET indexed = $1 WHERE file_id = $2", n, id); };
    });
  });
  w.on_stage("rules", [&](casecore::jobs::job_context& ctx) {
    run_stage(env, ctx, [&](const std::string& content) {
      std::int64_t hits = 0;
      for (const auto& l : split_lines(content)) hits += l.find("powershell -enc") != std::string::npos;
      const auto id = file_id_of(ctx.current());
      return [hits, id](transaction& tx) { tx.exec("UPDATE file_stats SET rule_hits = $1 WHERE file_id = $2", hits, id); };
    });
  });
  w.on_stage("iocs", [&](casecore::jobs::job_context& ctx) {
    run_stage(env, ctx, [&](const std::string& content) {
      const auto case_id = ctx.current().concurrency_key.substr(5); // "case:<id>"
      const auto known = ctx.db().read([&](transaction& tx) { return iocs.find_by(tx, "case_id", case_id); });
      std::int64_t hits = 0;
      for (const auto& l : split_lines(content))
        hits += std::any_of(known.begin(), known.end(), [&](const auto& r) { return l.find(r.data.value) != std::string::npos; });
      const auto id = file_id_of(ctx.current());
      return [hits, id](transaction& tx) { tx.exec("UPDATE file_stats SET ioc_hits = $1 WHERE file_id = $2", hits, id); };
    });
  });
}

// --- phases -----------------------------------------------------------------------------------------

struct upload_figures {
  std::atomic<int> registered{0}, duplicates{0}, jobs_created{0};
  std::atomic<int> ioc_edits{0};
};

// Each user uploads every file in its own random order; a registration and its job commit together.
// Between uploads a user edits an IOC (optimistic versions, re-applied on conflict by modify()).
void upload_storm(casecore::database& db, casecore::file_registry& reg, const std::vector<evidence>& files, int users,
                  upload_figures& fig, const std::vector<std::int64_t>& ioc_ids, bool show) {
  example::progress bar("uploads", static_cast<std::int64_t>(files.size()) * users, show);
  std::vector<std::thread> threads;
  for (int u = 0; u < users; ++u) {
    threads.emplace_back([&, u] {
      const std::string me = "investigator-" + std::to_string(u + 1);
      std::mt19937 rng(static_cast<unsigned>(u) * 7919u + 1);
      auto order = files;
      std::shuffle(order.begin(), order.end(), rng);
      casecore::write_options as_me;
      as_me.actor = me;
      for (const auto& e : order) {
        const auto staged = reg.stage(e.path); // bytes go to the blob store outside the transaction
        db.write([&](transaction& tx) {
          const auto r = reg.register_staged(tx, e.case_id, staged, e.name);
          if (r.status == casecore::registration_status::duplicate) {
            tx.after_commit([&] { ++fig.duplicates; });
            return;
          }
          auto spec = casescope.make("full", "file:" + std::to_string(r.id), staged.sha256());
          spec.concurrency_key = "case:" + e.case_id;
          const bool created = casecore::jobs::enqueue(tx, spec).created;
          tx.after_commit([&, created] {
            ++fig.registered;
            fig.jobs_created += created;
          });
        }, as_me);
        const auto target = ioc_ids[rng() % ioc_ids.size()];
        db.write([&](transaction& tx) {
          const auto rec = iocs.modify(tx, target, [&](ioc& i) {
            i.note = "reviewed by " + me;
            ++i.edits;
          });
          tx.exec("INSERT INTO ioc_edits(ioc_id, version, actor) VALUES($1, $2, $3)", target, rec.version, me);
          tx.after_commit([&] { ++fig.ioc_edits; });
        }, as_me);
        bar.add();
      }
    });
  }
  for (auto& t : threads) t.join();
}

bool wait_for_pipeline(casecore::database& db, pipeline_env& env, std::int64_t expected_stages, bool show) {
  example::progress bar("pipeline stages", expected_stages, show);
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  for (;;) {
    bar.set(env.stages_done.load());
    const auto s = casecore::jobs::inspect(db);
    const auto active = (s.by_state.count("queued") ? s.by_state.at("queued") : 0) +
                        (s.by_state.count("running") ? s.by_state.at("running") : 0);
    if (active == 0) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

struct reindex_outcome {
  int granted = 0, refused = 0;
  std::int64_t docs = 0;
  bool stale_write_refused = false;
  std::string stale_message;
};

// Two investigators press "re-index case" at the same moment. The lease decides; the winner's
// database writes present the fencing token; after release, a write with the old token is refused.
reindex_outcome bulk_reindex(casecore::database& db, casecore::file_registry& reg, casecore::search_index& index,
                             const std::string& case_id) {
  reindex_outcome out;
  const std::string name = "case:" + case_id + ":bulk-reindex";
  std::latch tried(2);
  std::mutex m;
  std::optional<casecore::lease::grant> winner;
  std::vector<std::thread> users;
  for (int u = 0; u < 2; ++u) {
    users.emplace_back([&, u] {
      const std::string me = "investigator-" + std::to_string(u + 1);
      auto g = casecore::lease::try_acquire(db, name, me, 30s);
      tried.arrive_and_wait(); // both have asked before the winner starts (and eventually releases)
      std::lock_guard lock(m);
      if (!g) {
        ++out.refused;
        std::printf("  %s: re-index of %s refused, the lease is held\n", me.c_str(), case_id.c_str());
        return;
      }
      ++out.granted;
      winner = g;
      std::printf("  %s: holds %s with fencing token %lld\n", me.c_str(), name.c_str(), static_cast<long long>(g->token));
    });
  }
  for (auto& t : users) t.join();
  if (!winner) return out;
  for (const auto& f : reg.files_of_case(case_id)) {
    index.remove_file(f.id); // clear, then rebuild with the same deterministic ids
    const auto docs = documents_of(f.id, reg.store().get(f.blob_key));
    index.index(docs);
    out.docs += static_cast<std::int64_t>(docs.size());
  }
  db.write([&](transaction& tx) {
    casecore::lease::check(tx, winner->name, winner->token);
    tx.exec("INSERT INTO reindex_log(case_id, owner, token, docs) VALUES($1, $2, $3, $4)", case_id, winner->owner,
            winner->token, out.docs);
  });
  casecore::lease::release(db, *winner);
  try { // a paused holder waking up after it lost the lease
    db.write([&](transaction& tx) {
      casecore::lease::check(tx, winner->name, winner->token);
      tx.exec("INSERT INTO reindex_log(case_id, owner, token, docs) VALUES($1, $2, $3, 0)", case_id, winner->owner,
              winner->token);
    });
  } catch (const casecore::lease_lost& e) {
    out.stale_write_refused = true;
    out.stale_message = e.what();
  }
  return out;
}

// One deliberate stale write: read an IOC, let someone else edit it, then try to save the old copy.
std::string show_version_conflict(casecore::database& db, std::int64_t id) {
  auto mine = db.read([&](transaction& tx) { return iocs.get(tx, id); });
  casecore::write_options other;
  other.actor = "investigator-2";
  db.write([&](transaction& tx) { // an edit that is logged but not counted in `edits`
    const auto r = iocs.modify(tx, id, [](ioc& i) { i.note = "confirmed C2 domain"; });
    tx.exec("INSERT INTO ioc_edits(ioc_id, version, actor) VALUES($1, $2, $3)", id, r.version, tx.actor());
  }, other);
  mine.data.note = "false positive";
  try {
    casecore::write_options me;
    me.actor = "investigator-1";
    db.write([&](transaction& tx) { iocs.update(tx, mine); }, me);
    return "stale update was NOT refused";
  } catch (const casecore::version_conflict& e) {
    return "investigator-1 saving version " + std::to_string(e.expected_version()) + " refused: current version " +
           std::to_string(e.current_version()) + " by " + e.updated_by();
  }
}

} // namespace

int main(int argc, char** argv) {
  example::args a(argc, argv, "forensic_case: caseScope's uploads, pipeline, bulk re-index and IOC edits on casecore");
  const auto url = a.text("--db", "", "database URL (default: SQLite file in a scratch folder)");
  const bool fresh = a.flag("--fresh", "PostgreSQL: run in a new private schema; SQLite: delete the --db file first");
  const bool keep = a.flag("--keep", "keep the scratch folder (and schema) afterwards");
  const int users = static_cast<int>(a.number("--users", 6, 1, 64, "concurrent investigators uploading"));
  const int cases = static_cast<int>(a.number("--cases", 3, 1, 50, "cases"));
  const int files = static_cast<int>(a.number("--files", 4, 1, 100, "distinct logs per case"));
  const int lines = static_cast<int>(a.number("--lines", 60, 1, 100000, "events per log"));
  const int workers = static_cast<int>(a.number("--workers", 4, 1, 64, "pipeline worker threads"));
  const bool show = !a.flag("--no-progress", "no progress bars");
  a.finish();

  try {
    example::environment env("forensic_case", url, fresh, keep);
    auto& db = env.db();
    const auto schema_steps = schema();
    casecore::migrate(db, schema_steps);
    if (example::scalar(db, "SELECT count(*) FROM casecore_files") + example::scalar(db, "SELECT count(*) FROM iocs") > 0) {
      std::fprintf(stderr, "forensic_case: %s already holds a previous run; use --fresh\n", db.describe().c_str());
      return 2;
    }
    std::printf("forensic_case on %s: %d investigators, %d cases x %d logs (+ a copy and a shared playbook each)\n",
                db.describe().c_str(), users, cases, files);

    auto blobs = casecore::make_local_blob_store(env.dir() / "blobs", {.fsync = false});
    auto index = casecore::make_sqlite_search_index(env.dir() / "search.db");
    casecore::file_registry reg(db, *blobs);
    const auto evidence_files = make_evidence(env.dir(), cases, files, lines);

    std::vector<std::int64_t> ioc_ids;
    db.write([&](transaction& tx) {
      for (int c = 1; c <= cases; ++c)
        for (const auto& v : ioc_values) ioc_ids.push_back(iocs.insert(tx, {"case-" + std::to_string(c), v, "", 0}).id);
    });

    // The pipeline runs while uploads arrive; at most one job per case at a time.
    pipeline_env penv{*blobs, *index};
    casecore::jobs::worker_options wo;
    wo.owner = "worker-a";
    wo.threads = workers;
    wo.max_per_key = 1;
    wo.poll = 20ms;
    casecore::jobs::worker w(db, wo);
    register_handlers(w, penv);
    w.start();

    upload_figures fig;
    const auto t0 = std::chrono::steady_clock::now();
    upload_storm(db, reg, evidence_files, users, fig, ioc_ids, show);
    w.notify();
    const std::int64_t expected_rows = static_cast<std::int64_t>(evidence_files.size());
    const bool drained = wait_for_pipeline(db, penv, expected_rows * 4, show);
    w.stop();
    const auto ws = w.stats();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::printf("uploads: %d attempts -> %d registered, %d duplicates refused by the unique key; %d jobs enqueued\n",
                users * static_cast<int>(evidence_files.size()), fig.registered.load(), fig.duplicates.load(), fig.jobs_created.load());
    std::printf("pipeline: %llu jobs, %llu stages, %llu failed attempts, %llu lost claims in %lld ms (with uploads)\n",
                static_cast<unsigned long long>(ws.succeeded), static_cast<unsigned long long>(ws.stages),
                static_cast<unsigned long long>(ws.failures), static_cast<unsigned long long>(ws.lost), static_cast<long long>(ms));
    std::printf("IOC edits: %d committed (conflicting edits re-applied by modify())\n", fig.ioc_edits.load());

    std::printf("bulk re-index of case-1, two investigators at once:\n");
    const auto re = bulk_reindex(db, reg, *index, "case-1");
    std::printf("  after release, a write with the old token: %s\n",
                re.stale_write_refused ? ("refused (" + re.stale_message + ")").c_str() : "ACCEPTED");
    const auto conflict = show_version_conflict(db, ioc_ids.front());
    std::printf("optimistic IOC edit: %s\n", conflict.c_str());

    const auto hits = index->query("powershell enc", 1000000);
    const auto ioc_hits = index->query("evil example com", 1000000);
    std::printf("search 'powershell enc': %zu events; 'evil example com': %zu events\n", hits.size(), ioc_hits.size());

    // --- invariants, from the database and the index ---------------------------------------------
    example::invariant_report rep;
    const auto rows = example::scalar(db, "SELECT count(*) FROM casecore_files");
    const auto distinct_rows = example::scalar(
        db, "SELECT count(*) FROM (SELECT DISTINCT case_id, sha256, original_name FROM casecore_files) d");
    rep.check("one row per (case, hash, name)", rows == distinct_rows && rows == expected_rows,
              "rows " + std::to_string(rows) + ", distinct " + std::to_string(distinct_rows) + ", expected " + std::to_string(expected_rows));
    std::int64_t missing = 0;
    for (int c = 1; c <= cases; ++c)
      for (const auto& f : reg.files_of_case("case-" + std::to_string(c))) missing += !blobs->exists(f.blob_key);
    const auto distinct_blobs = example::scalar(db, "SELECT count(DISTINCT blob_key) FROM casecore_files");
    rep.check("every blob present (content stored once)", missing == 0 && static_cast<std::int64_t>(blobs->list().size()) == distinct_blobs,
              std::to_string(missing) + " missing, " + std::to_string(blobs->list().size()) + " blobs for " +
                  std::to_string(distinct_blobs) + " distinct contents");
    const auto jobs_total = example::scalar(db, "SELECT count(*) FROM casecore_jobs");
    const auto jobs_ok = example::scalar(db, "SELECT count(*) FROM casecore_jobs WHERE state = 'succeeded'");
    rep.check("one job per registered file, all succeeded", drained && jobs_total == rows && jobs_ok == rows,
              std::to_string(jobs_ok) + " succeeded of " + std::to_string(jobs_total) + " jobs");
    const auto runs = example::scalar(db, "SELECT count(*) FROM stage_runs");
    const auto dup_runs = example::scalar(db, "SELECT count(*) FROM (SELECT job_id, stage FROM stage_runs GROUP BY job_id, stage HAVING count(*) > 1) d");
    rep.check("every (job, stage) ran exactly once", runs == jobs_total * 4 && dup_runs == 0,
              example::eq(runs, jobs_total * 4) + " stage runs, " + std::to_string(dup_runs) + " repeated");
    // Per case, the [first start, last end] spans of its jobs must not overlap.
    const auto overlaps = example::scalar(db,
        "WITH spans AS (SELECT job_id, case_id, min(started_us) s, max(finished_us) e FROM stage_runs GROUP BY job_id, case_id)"
        " SELECT count(*) FROM spans a JOIN spans b ON a.case_id = b.case_id AND a.job_id < b.job_id AND a.s < b.e AND b.s < a.e");
    rep.check("no two jobs of one case ran at once", overlaps == 0, std::to_string(overlaps) + " overlapping pairs");
    const auto events = example::scalar(db, "SELECT coalesce(sum(events), 0) FROM file_stats");
    const auto indexed = example::scalar(db, "SELECT coalesce(sum(indexed), 0) FROM file_stats");
    const auto docs = static_cast<std::int64_t>(index->count());
    rep.check("index doc count == events, no duplicates", docs == events && indexed == events,
              "docs " + example::eq(docs, events) + " events (indexed " + std::to_string(indexed) + ")");
    const auto rule_hits = example::scalar(db, "SELECT coalesce(sum(rule_hits), 0) FROM file_stats");
    rep.check("search finds every rule hit", static_cast<std::int64_t>(hits.size()) == rule_hits,
              example::eq(static_cast<long long>(hits.size()), rule_hits));
    rep.check("bulk re-index: one lease holder, one refusal", re.granted == 1 && re.refused == 1 &&
                  example::scalar(db, "SELECT count(*) FROM reindex_log") == 1 && re.stale_write_refused,
              std::to_string(re.granted) + " granted, " + std::to_string(re.refused) + " refused, stale token " +
                  (re.stale_write_refused ? "fenced" : "ACCEPTED"));
    const auto edits_sum = example::scalar(db, "SELECT coalesce(sum(edits), 0) FROM iocs");
    const auto edit_rows = example::scalar(db, "SELECT count(*) FROM ioc_edits");
    // Every committed write bumped the version by one: versions = 1 + edits (+1 for the demo's edit).
    const auto version_sum = example::scalar(db, "SELECT coalesce(sum(version - 1), 0) FROM iocs");
    rep.check("IOC edits == successful modifies (no lost update)",
              edits_sum == fig.ioc_edits && edit_rows == edits_sum + 1 && version_sum == edit_rows,
              "edits " + example::eq(edits_sum, fig.ioc_edits) + ", versions written " + std::to_string(version_sum) +
                  ", edit log " + std::to_string(edit_rows));
    rep.print();
    return rep.exit_code();
  } catch (const casecore::error& e) {
    std::fprintf(stderr, "forensic_case: %s\n", e.what());
    return 2;
  }
}
