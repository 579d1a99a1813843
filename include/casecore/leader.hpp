// casecore/leader.hpp — leader election on a lease: one process at a time runs the periodic work.
//
// Concept: every candidate (process, host) builds a leader_election for the same name and calls
// tick() regularly (at least every ttl / 3). A tick campaigns for the lease when nobody holds it
// and renews it while this candidate holds it; is_leader() says whether this candidate leads.
// Leadership IS a lease (lease.hpp): the term ends when the lease expires on the database clock, is
// resigned, or is taken over after expiring. Each term has a fencing token (`fence()`) that strictly
// increases from term to term of one name and is never reused.
//
// Guarantees (both backends, the lease's): at most one candidate holds the lease at any moment of
// the database clock, so the terms of one name never overlap, and their tokens strictly increase.
// A write that presents the fence — check(tx) inside the write's transaction, or the fence handed to
// a port (ports/fence.hpp) — commits only while its term is current, and before any later term starts.
// What is NOT guaranteed: that is_leader() is true only while the lease is held. A leader that is
// paused (GC, SIGSTOP, a slow disk, a partition) past its ttl still believes it leads until its next
// tick; is_leader() turns false by itself once the ttl has passed on this process's monotonic clock
// since the renewal statement was sent, but between that check and a write any pause may intervene.
// So every write that must not happen twice, or must not happen after a newer leader started,
// presents the fence. Work that is merely wasteful when done twice (a sweep, a prune) needs none.
// Settings: `ttl` (default 15 s) bounds failover after a leader dies: a new leader is elected at the
// first tick of another candidate after the ttl has run out; resign() hands over at once (at the
// next tick of another candidate). tick() more often than every ttl / 3 so that a slow or failed
// renewal has two more chances before the term ends.
// Failure modes: invalid_argument for a bad name / owner (lease.hpp's rules: 1..200 printable
// characters) or a ttl outside 1 ms .. 1 year (nothing written); tick() and resign() throw what the
// database throws (connection_lost, backend_unavailable, ...) after settling what they can: a tick
// that cannot reach the database keeps the term only until its local expiry. check() throws
// lease_lost when this candidate does not lead or its term ended. Callbacks run on the thread that
// called tick() / resign(), after the state changed; they may read is_leader() / fence() / term()
// but must not call tick() or resign() of the same election (those are serialised: it would
// deadlock). What they throw propagates out of that call. Thread-safe.
// A second candidate with the same owner string is a different candidate (leases never re-acquire
// for the same owner), so a restarted process does not inherit its predecessor's term.
//
// Example:
//   casecore::leader_election election(db, "billing.nightly", hostname + ":" + pid, {15s, {}, {}});
//   for (;;) {                                   // e.g. every 5 s on a background thread
//     if (election.tick()) {
//       db.write([&](casecore::transaction& tx) {
//         tx.exec("UPDATE invoices SET state = 'sent' WHERE state = 'due'");
//         election.check(tx); // last: a deposed leader's transaction rolls back (lease_lost)
//       });
//     }
//     std::this_thread::sleep_for(5s);
//   }
//   election.resign();                           // at shutdown: the next candidate takes over at once
//
// Periodic work on the leader of a casecore worker pool: worker_options::leader_tasks (worker.hpp)
// runs leader_task's on the worker elected through the lease "casecore.jobs.maintenance"; two are
// ready-made below (sweeping orphaned blobs, delivering the outbox).
#pragma once

#include <casecore/database.hpp>
#include <casecore/lease.hpp>
#include <casecore/outbox.hpp>
#include <casecore/ports/fence.hpp>

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

class file_registry;

/// Settings of a leader_election.
struct leader_options {
  /// Length of a term without a renewal: a dead leader is replaced after at most this long.
  std::chrono::milliseconds ttl{15000};
  /// Called when this candidate starts a term, with the term's fence.
  std::function<void(const fence&)> on_elected;
  /// Called when this candidate's term ended (expired, taken over, renewal refused or resigned),
  /// with the fence of the term that ended.
  std::function<void(const fence&)> on_deposed;
};

/// One candidate for the leadership of `name` (see the header comment).
class leader_election {
public:
  /// A candidate that does not lead yet (nothing is written until the first tick()).
  leader_election(database db, std::string name, std::string owner, leader_options options = {});
  /// Resigns when leading (best effort: errors are swallowed; the lease then expires by itself).
  ~leader_election();
  leader_election(const leader_election&) = delete;
  leader_election& operator=(const leader_election&) = delete;

  /// Renew the term when leading, else campaign (take the lease if it is free or expired); returns
  /// is_leader(). Call it at least every ttl / 3.
  bool tick();
  /// True while this candidate holds a term that has not expired on the local monotonic clock
  /// (measured from before the last renewal). A paused leader may still see true: fence writes.
  bool is_leader() const;
  /// The fence of the current term ({name, token}); nullopt when not leading.
  std::optional<casecore::fence> fence() const;
  /// The current term's lease (token, database-clock expiry of the last renewal); nullopt when not leading.
  std::optional<lease::grant> term() const;
  /// Fence a write: lease_lost unless this candidate leads and its term is current and unexpired on
  /// the database clock (lease::check; call it last in the write transaction).
  void check(transaction& tx) const;
  /// End the term now (the lease is released; another candidate may win at its next tick). No
  /// effect when not leading. The candidate may campaign again with tick().
  void resign();

  /// The lease name.
  const std::string& name() const noexcept { return name_; }
  /// This candidate's owner string.
  const std::string& owner() const noexcept { return owner_; }
  /// The settings.
  const leader_options& options() const noexcept { return options_; }

private:
  using steady = std::chrono::steady_clock;
  database db_;
  std::string name_;
  std::string owner_;
  leader_options options_;
  mutable std::mutex state_m_;   // guards grant_ / held_until_ (short holds, for the const readers)
  std::mutex tick_m_;            // serialises tick() / resign()
  std::optional<lease::grant> grant_;
  steady::time_point held_until_{};
};

/// Periodic work run only on the elected leader (worker_options::leader_tasks).
struct leader_task {
  std::string name;                   ///< for logs (1..100 printable characters)
  std::chrono::milliseconds period{60000}; ///< pause between the end of one run and the next (> 0)
  /// The work: the database and the leader's current fence (present it to fenced writes and ports).
  /// An exception ends this run (logged as "leader.task_failed"); the task runs again next period.
  std::function<void(database&, const casecore::fence&)> run;
};

/// Ready-made leader task: registry.sweep_orphans(grace) every `period` (the registry — and its blob
/// store — must outlive the worker). A sweep is safe from any number of processes; on the leader it
/// simply runs once per period per deployment instead of once per host.
/// Example: `options.leader_tasks.push_back(casecore::sweep_orphans_task(files, 1h, 24h));`
leader_task sweep_orphans_task(file_registry& registry, std::chrono::milliseconds period, std::chrono::milliseconds grace);

/// Ready-made leader task: deliver `topic`'s outbox through `handler` every `period` (batches of
/// options.batch until a batch comes back short, at most 100 batches per run). Delivery stays
/// at least once (outbox.hpp): the handler must be idempotent.
/// Example: `options.leader_tasks.push_back(casecore::outbox_delivery_task("mail", send_mail, 1s));`
leader_task outbox_delivery_task(std::string topic, std::function<void(const outbox::message&)> handler,
                                 std::chrono::milliseconds period, outbox::drain_options options = {});

} // namespace casecore

CASECORE_API_END
