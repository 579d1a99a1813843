#include <casecore/error.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>

#include <spawn.h>

#include <csignal>
#include <string_view>
#include <thread>
#include <cstdio>
#include <fcntl.h>
#include <sched.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace casecore::testing {

namespace {
std::map<std::string, child_main>& registry() {
  static std::map<std::string, child_main> r;
  return r;
}
constexpr std::string_view flag = "--casecore-child=";
} // namespace

bool register_child(const std::string& name, child_main fn) {
  registry()[name] = std::move(fn);
  return true;
}

bool run_child_if_requested(int argc, char** argv, int& status) {
  if (argc < 2 || !std::string_view(argv[1]).starts_with(flag)) return false;
  const std::string name(std::string_view(argv[1]).substr(flag.size()));
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::fprintf(stderr, "unknown child '%s'\n", name.c_str());
    status = 2;
    return true;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    status = it->second(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %s failed: %s\n", name.c_str(), e.what());
    status = 3;
  }
  std::fflush(stdout);
  return true;
}

child_process::child_process(const std::string& name, const std::vector<std::string>& args, const child_options& options) {
  // Output goes to an unlinked temporary file, so a chatty child can never block on a full pipe.
  char path[] = "/tmp/casecore-child-XXXXXX";
  out_fd_ = ::mkstemp(path);
  if (out_fd_ < 0) raise(errc::internal, "mkstemp failed");
  ::unlink(path);
  std::vector<std::string> argv_s{"/proc/self/exe", std::string(flag) + name};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) raise(errc::internal, "fork failed");
  if (pid_ == 0) {
    ::dup2(out_fd_, STDOUT_FILENO);
    if (!options.netns.empty()) {
      const auto ns = "/run/netns/" + options.netns;
      const int fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "child %s: cannot enter network namespace %s\n", name.c_str(), options.netns.c_str());
        ::_exit(126);
      }
    }
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) ::_exit(125);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
}

child_process::child_process(child_process&& o) noexcept
    : pid_(o.pid_), out_fd_(o.out_fd_), reaped_(o.reaped_), done_(std::move(o.done_)) {
  o.pid_ = -1;
  o.out_fd_ = -1;
}

child_process::~child_process() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

void child_process::kill(int signal) const {
  if (pid_ > 0 && !reaped_) ::kill(pid_, signal);
}

child_result child_process::wait() {
  if (reaped_) return done_;
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  done_.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  ::lseek(out_fd_, 0, SEEK_SET);
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out_fd_, buf, sizeof buf)) > 0) done_.output.append(buf, static_cast<std::size_t>(n));
  return done_;
}

std::vector<child_result> run_children(const std::string& name, int count, const std::vector<std::string>& args) {
  std::vector<child_process> kids;
  for (int i = 0; i < count; ++i) {
    auto a = args;
    a.push_back(std::to_string(i));
    kids.emplace_back(name, a);
  }
  std::vector<child_result> out;
  for (auto& k : kids) out.push_back(k.wait());
  return out;
}

namespace {
// An unlinked temporary file for a stream's output.
int temp_output() {
  char path[] = "/tmp/casecore-program-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) raise(errc::internal, "mkstemp failed");
  ::unlink(path);
  return fd;
}

std::string read_all(int fd) {
  std::string out;
  ::lseek(fd, 0, SEEK_SET);
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string_view env_name(std::string_view entry) { return entry.substr(0, entry.find('=')); }
} // namespace

program_result run_program(const std::string& program, const std::vector<std::string>& args, const program_options& options) {
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const auto name = env_name(*e);
    bool keep = true;
    for (const auto& u : options.unset_env) keep = keep && name != u;
    for (const auto& x : options.extra_env) keep = keep && name != env_name(x);
    if (keep) env_s.emplace_back(*e);
  }
  env_s.insert(env_s.end(), options.extra_env.begin(), options.extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  const int out_fd = temp_output(), err_fd = temp_output();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, options.cwd.c_str());
  std::fflush(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, program.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ::close(out_fd);
    ::close(err_fd);
    raise(errc::internal, "cannot start " + program + ": " + std::strerror(rc));
  }
  program_result r;
  int status = 0;
  if (options.timeout.count() > 0) {
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        r.timed_out = true;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  } else {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_all(out_fd);
  r.err = read_all(err_fd);
  ::close(out_fd);
  ::close(err_fd);
  return r;
}

std::string self_path() {
  char exe[4096];
  const auto n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) raise(errc::internal, "cannot read /proc/self/exe");
  return std::string(exe, static_cast<std::size_t>(n));
}

std::string child_flag(const std::string& name) { return std::string(flag) + name; }

std::vector<std::string> preload_friendly_env() { return {"ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0"}; }

program_result run_skewed_child(const std::string& offset, const std::string& name, const std::vector<std::string>& args) {
  std::vector<std::string> a{"-f", offset, self_path(), child_flag(name)};
  a.insert(a.end(), args.begin(), args.end());
  program_options o;
  o.extra_env = preload_friendly_env();
  return run_program("/usr/bin/faketime", a, o);
}

} // namespace casecore::testing
