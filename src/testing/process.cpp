#include <casecore/error.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <sched.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

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

} // namespace casecore::testing
