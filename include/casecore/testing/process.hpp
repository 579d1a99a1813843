// casecore/testing/process.hpp — run the current test binary again as child processes.
//
// Race tests need separate processes, not only threads. A test registers a named child entry point
// with CASECORE_CHILD(name) { ... } and starts copies with spawn_children(); the binary's main()
// calls run_child_if_requested() first, which runs the entry and exits with its status when the
// process was started as a child. Children print what they produced on stdout; the parent collects it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// A child entry point: receives its arguments, returns the exit status.
using child_main = std::function<int(const std::vector<std::string>& args)>;

/// Register a child entry point (use CASECORE_CHILD).
bool register_child(const std::string& name, child_main fn);

/// In main(): if argv asks for a child, run it and return true with its exit status in `status`.
bool run_child_if_requested(int argc, char** argv, int& status);

/// Where a child runs.
struct child_options {
  /// Run it inside this network namespace (`ip netns` name, /run/netns/NAME; needs root), as another
  /// host would: it reaches only what the namespace routes to. Empty: this process's network.
  std::string netns;
  /// Its working directory (empty: inherited).
  std::string cwd;
};

/// A finished child.
struct child_result {
  int exit_code = -1;   ///< exit status, or 128+signal when killed
  std::string output;   ///< everything it wrote to stdout
};

/// A running child process.
class child_process {
public:
  /// Start /proc/self/exe as child `name` with `args`.
  child_process(const std::string& name, const std::vector<std::string>& args, const child_options& options = {});
  ~child_process();
  /// Takes over the child (and the duty to reap it) from `o`.
  child_process(child_process&& o) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  /// Its pid.
  int pid() const noexcept { return pid_; }
  /// Send a signal (e.g. SIGKILL).
  void kill(int signal) const;
  /// Wait for it and collect its output.
  child_result wait();

private:
  int pid_ = -1;
  int out_fd_ = -1;
  bool reaped_ = false;
  child_result done_;
};

/// Start `count` children of `name`, each given `args` plus its index as the last argument; wait for all.
std::vector<child_result> run_children(const std::string& name, int count, const std::vector<std::string>& args);

/// How run_program starts a program.
struct program_options {
  std::string cwd;                      ///< its working directory (empty: inherited)
  std::vector<std::string> unset_env;   ///< variables removed from the inherited environment (names)
  std::vector<std::string> extra_env;   ///< "NAME=value" added (replacing an inherited NAME)
  std::chrono::milliseconds timeout{0}; ///< killed (SIGKILL) after this long; 0: waits for it
};
/// A finished program.
struct program_result {
  int exit_code = -1;     ///< exit status, or 128+signal when killed
  std::string out;        ///< everything it wrote to stdout
  std::string err;        ///< everything it wrote to stderr
  bool timed_out = false; ///< killed because program_options::timeout passed
};
/// Run `program` (a path) with `args`, stdin from /dev/null, stdout and stderr captured in unlinked
/// temporary files (a chatty program never blocks on a full pipe), and wait for it. Used by the
/// tests that run the `casecore` CLI or this binary under faketime / an LD_PRELOAD shim.
program_result run_program(const std::string& program, const std::vector<std::string>& args, const program_options& options = {});
/// This binary's path (/proc/self/exe resolved), for run_program(self_path(), {child_flag(name), ...}).
std::string self_path();
/// The first argument that makes this binary run child entry `name` (see CASECORE_CHILD).
std::string child_flag(const std::string& name);
/// The environment additions a child needs when a library is preloaded ahead of the sanitizer
/// runtime (libfaketime, an LD_PRELOAD shim): ASan must not insist on being first.
std::vector<std::string> preload_friendly_env();
/// Run this binary's child entry `name` with `args` under /usr/bin/faketime, its clock shifted by
/// `offset` ("+30s", "-20s"): another host whose clock is off. Waits for it.
program_result run_skewed_child(const std::string& offset, const std::string& name, const std::vector<std::string>& args);

} // namespace casecore::testing

#define CASECORE_CHILD_CAT2(a, b) a##b
#define CASECORE_CHILD_CAT(a, b) CASECORE_CHILD_CAT2(a, b)
/// Define a child entry point: CASECORE_CHILD(my_child) { use args; return 0; }
#define CASECORE_CHILD(name)                                                                                   \
  static int CASECORE_CHILD_CAT(casecore_child_fn_, name)(const std::vector<std::string>& args);              \
  static const bool CASECORE_CHILD_CAT(casecore_child_reg_, name) =                                            \
      ::casecore::testing::register_child(#name, &CASECORE_CHILD_CAT(casecore_child_fn_, name));              \
  static int CASECORE_CHILD_CAT(casecore_child_fn_, name)([[maybe_unused]] const std::vector<std::string>& args)

CASECORE_API_END
