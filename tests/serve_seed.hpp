// The jobs, lease and counter the `casecore serve` tests look at (tests/serve_test.cpp and the
// browser test tests/browser/driver.cpp): one job whose operation, subject, payload and error are
// hostile markup (each would set document.title to "pwned" if a page ran it), failed jobs to retry
// or leave alone, a queued job to cancel, a running one with its worker, and filler for filters and
// paging.
#pragma once

#include <casecore/counter.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

namespace casecore::testing {

inline const std::string hostile_operation = "<script>document.title='pwned';window.pwned=1</script>";
inline const std::string hostile_subject = "\"><img src=x onerror=\"document.title='pwned'\">'";
inline const std::string hostile_payload = "<script>document.title='pwned'</script>{\"case\":\"</pre><b>x</b>\"}";
inline const std::string hostile_error = "</pre><script>document.title='pwned'</script><b>boom</b> & \"quoted\"";

/// Ids of the seeded jobs.
struct seeded_jobs {
  std::int64_t hostile = 0;   ///< failed at stage 1 of 2, hostile everywhere (retry target)
  std::int64_t untouched = 0; ///< failed; refused POSTs aim at it and must leave it as it is
  std::int64_t queued = 0;    ///< queued (cancel target)
  std::int64_t running = 0;   ///< running, claimed by "worker-7"
};

/// A job spec (assignments: designated initializers would have to name every member).
inline jobs::job_spec seed_spec(std::string operation, std::string subject, int max_attempts = 5) {
  jobs::job_spec j;
  j.operation = std::move(operation);
  j.subject = std::move(subject);
  j.max_attempts = max_attempts;
  return j;
}

/// Claim options for one job by `owner`.
inline jobs::claim_options seed_claimer(std::string owner, std::chrono::milliseconds lease = std::chrono::seconds(30)) {
  jobs::claim_options o;
  o.owner = std::move(owner);
  o.lease = lease;
  return o;
}

/// Claim exactly job `id` (enqueued last, nothing else due) and fail it at `stage` with `error`.
inline void seed_fail(database& db, std::int64_t id, int complete_first, const std::string& error) {
  auto claimed = jobs::claim(db, seed_claimer("seed-worker"));
  if (claimed.size() != 1 || claimed[0].id != id) throw std::runtime_error("seed: claimed the wrong job");
  const jobs::claim_ref ref{id, claimed[0].lease_epoch};
  for (int s = 0; s < complete_first; ++s)
    db.write([&](transaction& tx) { jobs::complete_stage(tx, ref, s, tx.now_us() - 1500); });
  if (jobs::fail(db, ref, complete_first, error) != jobs::job_state::failed) throw std::runtime_error("seed: job did not fail");
}

/// Seed a migrated database.
inline seeded_jobs seed_dashboard(database& db) {
  seeded_jobs ids;
  auto hostile = seed_spec(hostile_operation, hostile_subject, 1);
  hostile.payload = hostile_payload;
  hostile.stages = {"extract", "index"};
  ids.hostile = jobs::enqueue(db, hostile).id;
  seed_fail(db, ids.hostile, 1, hostile_error);
  ids.untouched = jobs::enqueue(db, seed_spec("report", "untouched", 1)).id;
  seed_fail(db, ids.untouched, 0, "disk full");
  ids.running = jobs::enqueue(db, seed_spec("report", "running")).id;
  auto claimed = jobs::claim(db, seed_claimer("worker-7", std::chrono::hours(1)));
  if (claimed.size() != 1 || claimed[0].id != ids.running) throw std::runtime_error("seed: claimed the wrong job");
  ids.queued = jobs::enqueue(db, seed_spec("report", "cancel-me")).id;
  for (int i = 0; i < 30; ++i) {
    jobs::enqueue(db, seed_spec("alpha", "a" + std::to_string(i)));
    jobs::enqueue(db, seed_spec("beta", "b" + std::to_string(i)));
  }
  if (!lease::try_acquire(db, "nightly-export", "host-a", std::chrono::hours(1))) throw std::runtime_error("seed: lease not acquired");
  counter::next(db, "invoice", "2026");
  return ids;
}

} // namespace casecore::testing
