// A `casecore serve` child process for tests (tests/serve_test.cpp, tests/browser/driver.cpp): it
// listens on a free 127.0.0.1 port (--listen 127.0.0.1:0), and the port is read from the line the
// server prints once it listens. Stopped with SIGTERM; stop() returns its exit status.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace casecore::testing {

inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The environment of this process without CASECORE_OPERATOR_TOKEN, plus `extra` ("NAME=value").
inline std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "CASECORE_OPERATOR_TOKEN=", 24) != 0) env.emplace_back(*e);
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

/// Run `program args...` with `env`, stdout / stderr to files; returns the pid.
inline pid_t spawn_logged(const std::string& program, const std::vector<std::string>& args, const std::vector<std::string>& env,
                          const std::filesystem::path& out, const std::filesystem::path& err) {
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto env_s = env;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, program.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + program + ": " + std::strerror(rc));
  return pid;
}

/// Exit status of a finished child (128 + signal when killed).
inline int wait_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// A running `casecore serve`.
class serve_process {
public:
  /// Start `cli serve --db url extra_args...` with `env` additions; waits (up to 60 s) until it
  /// listens. When it exits instead, exited() is set and port() is 0.
  serve_process(const std::string& cli, const std::string& url, const std::vector<std::string>& extra_args,
                const std::vector<std::string>& env, const std::filesystem::path& dir) {
    static int counter = 0;
    const auto tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    out_ = dir / ("serve-" + tag + ".out");
    err_ = dir / ("serve-" + tag + ".err");
    std::vector<std::string> args{"serve", "--db", url, "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = spawn_logged(cli, args, child_environment(env), out_, err_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    const std::string marker = "listening on http://127.0.0.1:";
    while (std::chrono::steady_clock::now() < deadline) {
      const auto text = read_text_file(out_);
      if (const auto at = text.find(marker); at != std::string::npos) {
        port_ = std::stoi(text.substr(at + marker.size()));
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    wait_status(pid_);
    pid_ = -1;
    throw std::runtime_error("casecore serve did not start listening within 60 s: " + read_text_file(err_));
  }
  ~serve_process() {
    if (pid_ > 0) stop();
  }
  serve_process(const serve_process&) = delete;
  serve_process& operator=(const serve_process&) = delete;

  /// The port it listens on (0 when it exited at start).
  int port() const noexcept { return port_; }
  /// Its exit status when it exited at start (or after stop()).
  std::optional<int> exited() const { return exit_code_; }
  /// SIGTERM, then its exit status.
  int stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      exit_code_ = wait_status(pid_);
      pid_ = -1;
    }
    return exit_code_.value_or(-1);
  }
  /// What it printed.
  std::string out() const { return read_text_file(out_); }
  /// What it printed on stderr.
  std::string err() const { return read_text_file(err_); }

private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::optional<int> exit_code_;
  std::filesystem::path out_, err_;
};

} // namespace casecore::testing
