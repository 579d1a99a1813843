// The task_transport port over LISTEN/NOTIFY: NOTIFY through the unit of work, LISTEN on one
// dedicated direct connection per transport, watched by one thread.
#include "conninfo.hpp"

#include <casecore/detail/token.hpp>
#include <casecore/postgres/notify_transport.hpp>
#include <casecore/transaction.hpp>
#include <casecore/url.hpp>

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <set>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace casecore::postgres {

namespace {

bool valid_channel(std::string_view c) noexcept {
  if (c.empty() || c.size() > 63 || (c.front() >= '0' && c.front() <= '9')) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

// A transaction pooler declared in the URL (casecore's own parameter, or still in the driver part).
bool declares_transaction_pooler(const database_url& url) {
  if (auto it = url.casecore.find("pooler"); it != url.casecore.end()) return it->second == "transaction";
  const auto& t = url.target;
  for (std::size_t pos = 0; (pos = t.find("pooler=transaction", pos)) != std::string::npos; ++pos)
    if (pos > 0 && (t[pos - 1] == '?' || t[pos - 1] == '&' || t[pos - 1] == ' ')) return true;
  return false;
}


// PgBouncer and other poolers hand the client their own backend key: the pid libpq was given differs
// from the server process that answers.
bool behind_pooler(pqxx::connection& conn) {
  pqxx::nontransaction w(conn);
  return w.exec("SELECT pg_backend_pid()")[0][0].as<int>() != conn.backendpid();
}

// A dead peer (host gone, network cut) must end the wait on the socket: with keepalives the kernel
// reports the connection broken after ~25 s of silence instead of never. Unix sockets ignore this.
void tune_socket(int fd) noexcept {
  if (fd < 0) return;
  const int on = 1, idle = 10, interval = 5, count = 3;
  const unsigned user_timeout_ms = 25000;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

} // namespace

struct notify_transport::impl {
  database db;
  notify_transport_options opt;
  std::string self = ::casecore::detail::random_token(); // tells this transport's own echoes apart
  std::unique_ptr<task_transport> local = make_inprocess_task_transport();
  std::string conninfo;
  std::string masked;

  mutable std::mutex m;
  mutable std::condition_variable changed;
  std::set<std::string> topics; // subscribed so far: remote wake-ups and resyncs go only to these
  bool stopping = false;
  notify_transport_stats st;

  int wake_pipe[2] = {-1, -1};
  std::thread listener;

  impl(database d, notify_transport_options o) : db(std::move(d)), opt(std::move(o)) {}

  ~impl() {
    for (int fd : wake_pipe)
      if (fd >= 0) ::close(fd);
  }

  void log(const std::string& line) {
    const auto text = "casecore notify transport (channel " + opt.channel + "): " + line;
    try {
      if (opt.on_event) opt.on_event(text);
      else std::fprintf(stderr, "%s\n", text.c_str());
    } catch (...) {
    }
  }

  std::string payload(const std::string& topic) const { return self + " " + topic; }

  void deliver_local(const std::string& topic) { local->notify(topic); }

  // A notification from the listening connection.
  void on_notification(const std::string& payload) {
    const auto space = payload.find(' ');
    if (space == std::string::npos) return; // not ours
    if (std::string_view(payload).substr(0, space) == self) return; // our echo: delivered already
    const auto topic = payload.substr(space + 1);
    {
      std::lock_guard g(m);
      if (!topics.count(topic)) return;
      ++st.received;
    }
    deliver_local(topic);
  }

  // After a (re)LISTEN: notifications sent while nobody listened are gone; wake everyone to re-check.
  void resync() {
    std::vector<std::string> all;
    {
      std::lock_guard g(m);
      all.assign(topics.begin(), topics.end());
      ++st.resyncs;
    }
    for (const auto& t : all) deliver_local(t);
  }

  // Sleeps up to `d`; false when stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock g(m);
    return !changed.wait_for(g, d, [&] { return stopping; });
  }

  void drain_pipe() noexcept {
    char buf[64];
    while (::read(wake_pipe[0], buf, sizeof buf) > 0) {
    }
  }

  class receiver final : public pqxx::notification_receiver {
  public:
    receiver(pqxx::connection_base& c, const std::string& channel, impl& owner) : notification_receiver(c, channel), owner_(owner) {}
    void operator()(const std::string& payload, int) override { owner_.on_notification(payload); }

  private:
    impl& owner_;
  };

  // The listener thread: connect + LISTEN, wait on the socket, dispatch, reconnect when it drops.
  void run() {
    auto delay = opt.reconnect_min;
    bool failing = false;
    while (true) {
      {
        std::lock_guard g(m);
        if (stopping) return;
      }
      std::unique_ptr<pqxx::connection> conn;
      std::unique_ptr<receiver> rcv;
      try {
        conn = std::make_unique<pqxx::connection>(conninfo);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        conn->inhibit_reactivation(true); // a silent reconnect would drop the LISTEN unnoticed
#pragma GCC diagnostic pop
        tune_socket(conn->sock());
        if (behind_pooler(*conn)) {
          // LISTEN through a pooler would listen on a server connection other clients then get.
          {
            std::lock_guard g(m);
            st.mode = "polling: a pooler sits between this listener and the server (detected)";
          }
          log("not listening: " + masked + " reaches PostgreSQL through a pooler (its backend pid differs from the "
              "server's); give a direct URL to the server as listen_url. Other hosts' workers find work by polling");
          return;
        }
        rcv = std::make_unique<receiver>(*conn, opt.channel, *this); // sends LISTEN
        if (!conn->is_open()) throw pqxx::broken_connection("connection lost during LISTEN");
      } catch (const std::exception& e) {
        rcv.reset();
        conn.reset();
        {
          std::lock_guard g(m);
          ++st.connect_failures;
        }
        if (!failing)
          log("cannot LISTEN on " + masked + ": " + mask_secrets(e.what()) + " — retrying with backoff; workers poll meanwhile");
        failing = true;
        if (!pause(delay)) return;
        delay = std::min(delay * 2, opt.reconnect_max);
        continue;
      }
      // Wake every subscriber once LISTEN is active, before announcing it: a subscription made after
      // wait_listening() returned sees real notifications only.
      resync();
      {
        std::lock_guard g(m);
        st.listening = true;
        ++st.connects;
        st.listener_pid = conn->backendpid();
      }
      changed.notify_all();
      log("listening (server pid " + std::to_string(conn->backendpid()) + ")");
      failing = false;
      delay = opt.reconnect_min;
      try {
        conn->get_notifs(); // anything that arrived while LISTEN ran
        while (true) {
          pollfd fds[2] = {{conn->sock(), POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
          const int rc = ::poll(fds, 2, -1);
          if (rc < 0 && errno != EINTR) throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
          if (fds[1].revents) drain_pipe();
          {
            std::lock_guard g(m);
            if (stopping) break;
          }
          if (fds[0].revents) {
            conn->get_notifs();
            if (!conn->is_open()) throw pqxx::broken_connection("server closed the listening connection");
          }
        }
      } catch (const std::exception& e) {
        {
          std::lock_guard g(m);
          st.listening = false;
          st.listener_pid = 0;
          ++st.drops;
        }
        changed.notify_all();
        log(std::string("listening connection lost: ") + e.what() + " — reconnecting");
        rcv.reset();
        conn.reset();
        continue;
      }
      // Stopping: close quietly.
      {
        std::lock_guard g(m);
        st.listening = false;
        st.listener_pid = 0;
      }
      rcv.reset();
      conn.reset();
      return;
    }
  }

  void stop() {
    {
      std::lock_guard g(m);
      stopping = true;
    }
    changed.notify_all();
    if (wake_pipe[1] >= 0) {
      const char b = 1;
      [[maybe_unused]] const auto n = ::write(wake_pipe[1], &b, 1);
    }
    if (listener.joinable()) listener.join();
  }
};

notify_transport::notify_transport(database db, notify_transport_options options) {
  if (db.dialect() != dialect::postgresql) raise(errc::invalid_argument, "the notify transport needs a PostgreSQL database");
  if (!valid_channel(options.channel))
    raise(errc::invalid_argument, "notify channel must be 1..63 of [a-z0-9_], not starting with a digit");
  if (options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min || options.startup_wait.count() < 0)
    raise(errc::invalid_argument, "notify transport: reconnect delays must be positive (min <= max), startup_wait not negative");
  impl_ = std::make_shared<impl>(std::move(db), std::move(options));
  auto& s = *impl_;
  if (s.opt.listen_url.empty()) {
    s.st.mode = "polling: no listen_url";
    s.log("not listening (no listen_url given): other hosts' workers find work by polling");
    return;
  }
  const auto url = parse_url(s.opt.listen_url);
  if (url.scheme != "postgresql") raise(errc::bad_url, "notify transport listen_url must be a postgresql:// URL");
  s.masked = url.masked;
  if (declares_transaction_pooler(url)) {
    s.st.mode = "polling: listen_url goes through a transaction pooler";
    s.log("not listening: " + url.masked + " declares pooler=transaction, and LISTEN does not work through a transaction "
          "pooler; give a direct URL to the server as listen_url. Other hosts' workers find work by polling");
    return;
  }
  s.st.mode = "listen";
  auto listener_url = url;
  listener_url.driver.try_emplace("connect_timeout", "10");
  listener_url.driver.try_emplace("application_name", "casecore_listener");
  s.conninfo = internal::libpq_conninfo(listener_url);
  if (::pipe2(s.wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) raise(errc::internal, "notify transport: cannot create a pipe");
  s.listener = std::thread([&s] { s.run(); });
  if (!wait_listening(s.opt.startup_wait))
    s.log("not listening yet after " + std::to_string(s.opt.startup_wait.count()) + " ms; still trying in the background");
}

notify_transport::~notify_transport() { impl_->stop(); }

notify_transport_stats notify_transport::stats() const {
  std::lock_guard g(impl_->m);
  return impl_->st;
}

bool notify_transport::wait_listening(std::chrono::milliseconds timeout) const {
  std::unique_lock g(impl_->m);
  return impl_->changed.wait_for(g, timeout, [&] { return impl_->st.listening || impl_->stopping; }) && impl_->st.listening;
}

void notify_transport::collect(metrics::sample_sink& sink) const {
  const auto s = stats();
  const metrics::labels l{{"channel", impl_->opt.channel}};
  sink.gauge("casecore_notify_listening", "1 while the transport's connection LISTENs, else 0 (polling)", l, s.listening ? 1 : 0);
  sink.gauge("casecore_notify_polling_mode", "1 when the transport was configured not to listen (no direct listen_url)", l,
             s.mode.starts_with("polling") ? 1 : 0);
  sink.counter("casecore_notify_connects_total", "LISTEN connections established", l, static_cast<double>(s.connects));
  sink.counter("casecore_notify_connect_failures_total", "failed attempts to connect and LISTEN", l, static_cast<double>(s.connect_failures));
  sink.counter("casecore_notify_drops_total", "listening connections lost", l, static_cast<double>(s.drops));
  sink.counter("casecore_notify_sent_total", "NOTIFYs sent", l, static_cast<double>(s.sent));
  sink.counter("casecore_notify_received_total", "notifications from other transports delivered", l, static_cast<double>(s.received));
}

void notify_transport::do_notify(const std::string& topic) {
  auto& s = *impl_;
  s.deliver_local(topic); // this process's subscribers at once; the server's echo is ignored
  try {
    s.db.write([&](transaction& tx) { tx.exec("SELECT pg_notify($1, $2)", s.opt.channel, s.payload(topic)); });
  } catch (const error& e) {
    raise(errc::backend_unavailable, std::string("notify transport: cannot send NOTIFY: ") + e.what());
  }
  std::lock_guard g(s.m);
  ++s.st.sent;
}

void notify_transport::do_notify_in(transaction& tx, const std::string& topic) {
  if (tx.dialect() != dialect::postgresql) raise(errc::invalid_argument, "notify transport: notify(tx) needs a PostgreSQL transaction");
  // Delivered by PostgreSQL when tx commits, dropped when it rolls back.
  tx.exec("SELECT pg_notify($1, $2)", impl_->opt.channel, impl_->payload(topic));
  tx.after_commit([s = impl_, topic] {
    s->deliver_local(topic);
    std::lock_guard g(s->m);
    ++s->st.sent;
  });
}

std::unique_ptr<task_subscription> notify_transport::do_subscribe(const std::string& topic) {
  {
    std::lock_guard g(impl_->m);
    impl_->topics.insert(topic);
  }
  return impl_->local->subscribe(topic);
}

std::shared_ptr<notify_transport> make_notify_transport(database db, notify_transport_options options) {
  return std::make_shared<notify_transport>(std::move(db), std::move(options));
}

} // namespace casecore::postgres
