// `casecore serve`: the web dashboard and /metrics (tools/cli/dashboard.hpp, docs/operations.md).
#include "cli.hpp"
#include "dashboard.hpp"

#include <casecore/url.hpp>

#include <httplib.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <pthread.h>
#include <sstream>
#include <sys/stat.h>
#include <thread>

namespace casecore::cli {

namespace {

constexpr std::size_t min_token_length = 16;

/// The operator token from --token-file (whole file, trailing whitespace dropped) or the environment.
std::string operator_token(const std::string& file) {
  std::string token;
  std::string origin;
  if (!file.empty()) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) raise(errc::configuration, "cannot read the token file '" + file + "'");
    // Like ssh's keys: a token others can read is no secret.
    if ((st.st_mode & 077) != 0)
      raise(errc::configuration, "the token file '" + file + "' is readable by others: chmod 600 it");
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) raise(errc::configuration, "cannot read the token file '" + file + "'");
    token = ss.str();
    origin = "the token file";
  } else if (const char* env = std::getenv("CASECORE_OPERATOR_TOKEN")) {
    token = env;
    origin = "CASECORE_OPERATOR_TOKEN";
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (token.empty())
    raise(errc::configuration, "actions (retry, cancel, pause, resume) need an operator token: give --token-file FILE or set "
                               "CASECORE_OPERATOR_TOKEN, or start with --read-only");
  if (token.size() < min_token_length)
    raise(errc::configuration, "the operator token from " + origin + " is shorter than " + std::to_string(min_token_length) +
                                   " characters (e.g. `openssl rand -hex 32`)");
  return token;
}

/// "HOST:PORT" (HOST may be [v6]); PORT 0 picks a free port.
std::pair<std::string, int> parse_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) raise(errc::invalid_argument, "--listen must be HOST:PORT, e.g. 127.0.0.1:8080");
  auto host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  const auto p = std::string_view(listen).substr(colon + 1);
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || port < 0 || port > 65535)
    raise(errc::invalid_argument, "--listen port must be 0..65535 (0 picks a free one)");
  return {host, port};
}

} // namespace

void add_serve(CLI::App& app, const context& ctx, action& run) {
  struct args_t {
    std::string listen = "127.0.0.1:8080";
    std::string token_file;
    bool read_only = false;
    int login_attempts = 10;
    double login_window = 60;
  };
  auto args = std::make_shared<args_t>();
  auto* cmd = app.add_subcommand("serve", "Serve the web dashboard and /metrics (docs/operations.md)");
  cmd->add_option("--listen", args->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_flag("--read-only", args->read_only, "Pages and /metrics only: every action is refused, no token needed");
  cmd->add_option("--token-file", args->token_file, "File holding the operator token (mode 0600); or set CASECORE_OPERATOR_TOKEN");
  cmd->add_option("--login-attempts", args->login_attempts, "Login attempts per client address per --login-window (then 429)")
      ->capture_default_str()
      ->type_name("N");
  cmd->add_option("--login-window", args->login_window, "Seconds of the login throttle's sliding window")
      ->capture_default_str()
      ->type_name("SECONDS");
  cmd->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      serve_settings settings;
      std::tie(settings.host, settings.port) = parse_listen(args->listen);
      settings.read_only = args->read_only;
      if (args->login_attempts < 1 || args->login_attempts > 100000) raise(errc::invalid_argument, "--login-attempts must be 1..100000");
      if (!(args->login_window >= 0.001 && args->login_window <= 86400)) raise(errc::invalid_argument, "--login-window must be 0.001..86400 seconds");
      settings.login_attempts = args->login_attempts;
      settings.login_window = std::chrono::milliseconds(static_cast<std::int64_t>(args->login_window * 1000));
      if (!settings.read_only) settings.operator_token = operator_token(args->token_file);
      auto db = settings.read_only ? ctx.open_db(access::read) : open_migrated(ctx, "casecore.jobs", access::write);

      // SIGINT / SIGTERM are taken by one thread (sigwait) that stops the server: nothing runs in a
      // signal handler. Blocked before the server's threads start, so they inherit the mask.
      sigset_t stop_signals;
      sigemptyset(&stop_signals);
      sigaddset(&stop_signals, SIGINT);
      sigaddset(&stop_signals, SIGTERM);
      pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

      httplib::Server server;
      // Bind first: the port is known (port 0 → a free one) before the pages learn their Host.
      const int port = settings.port == 0 ? server.bind_to_any_port(settings.host) : (server.bind_to_port(settings.host, settings.port) ? settings.port : -1);
      if (port < 0) raise(errc::configuration, "cannot listen on " + args->listen + " (address in use or not local)");
      settings.port = port;
      const auto state = mount_dashboard(server, db, settings);

      std::atomic<bool> stopping{false};
      std::thread stopper([&server, &stopping, stop_signals] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        stopping = true;
        server.stop();
      });
      const auto shown_host = settings.host.find(':') != std::string::npos ? "[" + settings.host + "]" : settings.host;
      std::cout << "casecore serve: listening on http://" << text(shown_host) << ":" << port << "/ ("
                << (settings.read_only ? "read-only" : "actions need the operator token") << ", database " << text(db.describe()) << ")"
                << std::endl;
      if (settings.host != "127.0.0.1" && settings.host != "localhost" && settings.host != "::1")
        std::cerr << "casecore serve: warning: listening on " << text(shown_host)
                  << ", beyond this host, over plain HTTP: put a TLS proxy in front (docs/operations.md)" << std::endl;
      server.listen_after_bind();
      const bool asked = stopping;
      if (!asked) pthread_kill(stopper.native_handle(), SIGTERM); // listening ended by itself: wake the stopper
      stopper.join();
      if (!asked) raise(errc::backend_error, "the HTTP server stopped unexpectedly");
      std::cout << "casecore serve: stopped" << std::endl;
    };
  });
}

} // namespace casecore::cli
