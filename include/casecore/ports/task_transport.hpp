// casecore/ports/task_transport.hpp — how "work is ready on topic T" reaches waiting workers.
//
// A transport only carries wake-ups, never the work itself: the work lives in the database (jobs,
// outbox rows), and workers always re-check it there. So a lost or duplicated wake-up costs latency,
// never correctness, and a worker that polls the database every few seconds stays correct on a
// transport that drops everything. The contract that makes waiting cheap and race-free:
//   * subscribe(topic) first, then check the database, then wait(): a notify() that happens after
//     subscribe() returned is never lost — the next wait() returns true at once;
//   * several notifies before a wait coalesce into one wake-up; spurious wake-ups are allowed.
// Producers inside a unit of work call notify(tx, topic): the wake-up is sent only if `tx` commits
// (the PostgreSQL transport sends NOTIFY inside the transaction itself, which PostgreSQL delivers at
// commit and drops on rollback; the default hook runs notify(topic) after commit).
// Default: an in-process transport (condition variables) — enough when producers and workers share a
// process; across processes, workers fall back to polling. Across hosts on PostgreSQL:
// casecore::postgres::notify_transport (LISTEN/NOTIFY, postgres/notify_transport.hpp). Routing over Redis: notify() = PUBLISH
// casecore:<topic>; a subscription = a SUBSCRIBE connection whose listener thread sets a flag and
// signals a condition variable that wait() blocks on (see docs/files-and-ports.md).
// Example:
//   auto sub = transport.subscribe("casecore.jobs");
//   while (running) { if (!claim_and_run()) sub->wait(poll); }          // worker
//   db.write([&](transaction& tx) { enqueue(tx, spec); transport.notify(tx, "casecore.jobs"); });
// Thread safety: transport methods may be called from any thread; a subscription is used by one
// thread at a time; the transport must outlive its subscriptions and any transaction it was handed
// to. Failure modes: invalid_argument for an empty or oversized topic or a negative timeout;
// transport errors as errc::backend_unavailable.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

class transaction;

/// A registration for wake-ups on one topic.
class task_subscription {
public:
  virtual ~task_subscription() = default;
  /// Block until a notify arrived since subscribing / the previous wait, or `timeout` passed.
  /// True when woken, false on timeout.
  bool wait(std::chrono::milliseconds timeout);

protected:
  /// Hook implementers override; timeout is non-negative.
  virtual bool do_wait(std::chrono::milliseconds timeout) = 0;
};

/// Carries wake-ups from producers to workers.
class task_transport {
public:
  virtual ~task_transport() = default;
  /// Wake every subscriber of `topic`.
  void notify(std::string_view topic);
  /// Wake every subscriber of `topic` once `tx` commits (never on rollback).
  void notify(transaction& tx, std::string_view topic);
  /// Start receiving wake-ups of `topic`.
  std::unique_ptr<task_subscription> subscribe(std::string_view topic);

  /// True for topics every transport must accept: 1..200 printable ASCII characters.
  static bool valid_topic(std::string_view topic) noexcept;

protected:
  /// Hooks implementers override; topics are already validated.
  virtual void do_notify(const std::string& topic) = 0;
  /// A subscription that wakes on notifications of `topic`.
  virtual std::unique_ptr<task_subscription> do_subscribe(const std::string& topic) = 0;
  /// Send a wake-up that takes effect when `tx` commits. Default: do_notify in an after-commit hook.
  virtual void do_notify_in(transaction& tx, const std::string& topic);
};

/// The default: wake-ups between the threads of this process.
std::unique_ptr<task_transport> make_inprocess_task_transport();

} // namespace casecore

CASECORE_API_END
