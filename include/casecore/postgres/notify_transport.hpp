// casecore/postgres/notify_transport.hpp — the task_transport port over PostgreSQL LISTEN/NOTIFY.
//
// Concept: wake-ups travel between hosts through the database they already share. A producer calls
// notify(tx, topic) inside the unit of work that enqueues the work: the transport runs
// `SELECT pg_notify(channel, payload)` in that transaction, which PostgreSQL delivers when it
// commits and drops when it rolls back. Each transport keeps ONE dedicated, direct listening
// connection (not from the pool) that LISTENs on the channel; a listener thread turns each
// notification into a wake-up of this process's subscribers of its topic. Create one transport per
// process and share it (shared_ptr) between workers and producers.
// Guarantee (the port's subscribe-then-wait contract, across hosts): while the listener is
// connected, a notify committed after subscribe() returned wakes the subscription's next wait().
// When the listening connection drops (server restart, failover, pg_terminate_backend, a network
// cut detected by TCP keepalive within ~25 s), the listener reconnects with backoff (libpq follows
// multi-host URLs with target_session_attrs), LISTENs again, and then wakes EVERY subscriber once:
// a notification sent while nobody listened is lost by PostgreSQL, so subscribers re-check the
// database instead. A lost or late wake-up costs latency, never correctness (workers still poll).
// A notify from this transport wakes this process's subscribers at once (its own echo from the
// server is ignored), and notify(tx, ...) wakes them after commit.
// Poolers: LISTEN through a transaction-mode pooler (PgBouncer pool_mode=transaction) does not work
// — the session belongs to whichever client used the server connection last. NOTIFY does work there
// (it is transactional), so `db` may go through the pooler; listen_url must be a DIRECT URL. With
// no listen_url, or a listen_url that declares `pooler=transaction`, the transport does not listen:
// it logs why once (on_event), reports mode "polling" in stats()/collect(), and remote hosts' workers
// find work by their poll interval.
// Failure modes: invalid_argument for a bad channel or option, or notify(tx) on a non-PostgreSQL
// transaction; bad_url for a malformed listen_url; notify() without a transaction raises
// backend_unavailable when its NOTIFY cannot be sent (this process's subscribers are woken first).
// Listener trouble is never thrown: it is logged, counted and retried.
// Example:
//   casecore::postgres::notify_transport_options o;
//   o.listen_url = "postgresql://app@db-primary:5432/app";          // direct, not through PgBouncer
//   auto transport = casecore::postgres::make_notify_transport(db, o);
//   worker_options w; w.transport = transport;                         // workers wait on it
//   db.write([&](transaction& tx) { jobs::enqueue(tx, spec); transport->notify(tx, w.topic); });
// Thread safety: every method may be called from any thread; a subscription is used by one thread
// at a time; the transport must outlive its subscriptions and the transactions it was handed to.
// The destructor stops the listener thread; while that thread is inside a connect attempt to an
// unreachable server it waits for it (connect_timeout = 10 s unless listen_url sets one).
#pragma once

#include <casecore/database.hpp>
#include <casecore/metrics.hpp>
#include <casecore/ports/task_transport.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::postgres {

/// Settings of a LISTEN/NOTIFY transport.
struct notify_transport_options {
  /// A DIRECT postgresql:// URL for the listening connection (multi-host URLs welcome); empty: do not
  /// listen (polling). Never a transaction pooler's address.
  std::string listen_url;
  /// The PostgreSQL channel all topics travel on: 1..63 of [a-z0-9_], not starting with a digit.
  std::string channel = "casecore_tasks";
  std::chrono::milliseconds reconnect_min{100};  ///< first delay after a failed (re)connect
  std::chrono::milliseconds reconnect_max{5000}; ///< longest delay between reconnect attempts
  /// How long the constructor waits for the first LISTEN (it never fails for a slow server: the
  /// listener keeps trying in the background).
  std::chrono::milliseconds startup_wait{5000};
  /// Receives one line per listener state change (default: written to stderr).
  std::function<void(std::string_view)> on_event;
};

/// What the transport did so far.
struct notify_transport_stats {
  bool listening = false;           ///< a live connection LISTENs now
  std::string mode;                 ///< "listen", or "polling: <why>"
  std::uint64_t connects = 0;       ///< LISTENs established (the first and every reconnect)
  std::uint64_t connect_failures = 0; ///< failed attempts to connect and LISTEN
  std::uint64_t drops = 0;          ///< listening connections lost
  std::uint64_t sent = 0;           ///< NOTIFYs sent (committed, for notify(tx))
  std::uint64_t received = 0;       ///< other transports' notifications delivered to subscribers
  std::uint64_t resyncs = 0;        ///< every-subscriber wake-ups after a (re)LISTEN
  int listener_pid = 0;             ///< server process of the listening connection (0 when down)
};

/// A task_transport over LISTEN/NOTIFY.
class notify_transport final : public task_transport {
public:
  /// Sends through `db` (PostgreSQL; a pooler is fine) and listens on options.listen_url.
  explicit notify_transport(database db, notify_transport_options options = {});
  /// Stops the listener thread and closes its connection.
  ~notify_transport() override;
  notify_transport(const notify_transport&) = delete;
  notify_transport& operator=(const notify_transport&) = delete;

  /// Figures and state now.
  notify_transport_stats stats() const;
  /// Block until the listener is connected and LISTENing (true) or `timeout` passed (false).
  bool wait_listening(std::chrono::milliseconds timeout) const;
  /// Write casecore_notify_* families (listening, mode, counters) labelled channel="<channel>".
  void collect(metrics::sample_sink& sink) const;

protected:
  void do_notify(const std::string& topic) override;
  /// A subscription fed by this process's one LISTEN connection.
  std::unique_ptr<task_subscription> do_subscribe(const std::string& topic) override;
  void do_notify_in(transaction& tx, const std::string& topic) override;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// A shared LISTEN/NOTIFY transport (what worker_options::transport takes).
std::shared_ptr<notify_transport> make_notify_transport(database db, notify_transport_options options = {});

} // namespace casecore::postgres

CASECORE_API_END
