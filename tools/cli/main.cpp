// casecore — the operator's command line: see and repair casecore state without writing code.
// The commands are in tools/cli/<group>.cpp; what they share in tools/cli/cli.hpp.
#include "cli.hpp"

#include <casecore/error.hpp>

#include <cstring>
#include <iostream>
#include <sstream>

#ifndef CASECORE_CLI_VERSION
#define CASECORE_CLI_VERSION "unknown" // tools/CMakeLists.txt passes the project's VERSION
#endif

using namespace casecore::cli;

namespace {

/// --json anywhere before "--" (known before parsing, so even a usage error can be JSON).
bool wants_json(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--json") == 0) return true;
  }
  return false;
}

/// Report an error: one escaped line on stderr; under --json also the JSON document on stdout.
int fail(bool json, std::string_view code, std::string_view message, int status) {
  if (json) std::cout << json_error(code, message, status) << "\n" << std::flush;
  std::cerr << "casecore: " << text(message) << " [" << code << "]\n";
  return status;
}

} // namespace

int main(int argc, char** argv) {
  context ctx;
  CLI::App app{"casecore: inspect and repair casecore state", "casecore"};
  app.add_option("--db", ctx.db_url, "Database URL (sqlite:file.db, postgresql://...)")->envname("CASECORE_DB")->capture_default_str();
  app.add_flag("--json", ctx.json, "Machine-readable JSON output (errors too: {\"error\":{...}} on stdout)");
  app.set_version_flag("--version", std::string("casecore ") + CASECORE_CLI_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  app.fallthrough(); // --db / --json may also follow the subcommand

  action run;
  add_migrate(app, ctx, run);
  add_status(app, ctx, run);
  add_metrics(app, ctx, run);
  add_health(app, ctx, run);
  add_outbox(app, ctx, run);
  add_counter(app, ctx, run);
  add_file(app, ctx, run);
  add_lease(app, ctx, run);
  add_job(app, ctx, run);
  add_rate(app, ctx, run);
  add_trigger(app, ctx, run);
  add_schedule(app, ctx, run);
  add_serve(app, ctx, run);
  add_help_commands(app, run);

  const bool json = wants_json(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 says "A subcommand is required" for a misspelt command: name the word it did not know.
    if (e.get_exit_code() != 0)
      if (const auto unknown = unknown_command(app, argc, argv)) return fail(json, "usage", *unknown, exit_usage);
    std::ostringstream out, err;
    const int code = app.exit(e, out, err);
    std::cout << text_lines(out.str()) << std::flush;
    if (code == 0 || !json) {
      std::cerr << text_lines(err.str()) << std::flush;
      return code == 0 ? exit_ok : exit_usage;
    }
    auto message = err.str();
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return fail(json, "usage", message, exit_usage);
  }
  try {
    if (run) run();
    std::cout.flush();
    return std::cout ? ctx.result : exit_failure;
  } catch (const casecore::error& e) {
    // what() is "<code>: <message>"; the code is printed separately.
    const std::string_view code = casecore::to_string(e.code());
    std::string_view message = e.what();
    if (message.starts_with(code) && message.substr(code.size()).starts_with(": ")) message.remove_prefix(code.size() + 2);
    return fail(ctx.json || json, code, message, exit_code(e.code()));
  } catch (const std::exception& e) {
    return fail(ctx.json || json, "failure", e.what(), exit_failure);
  }
}
