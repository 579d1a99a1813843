// casecore — the operator's command line: see and repair casecore state without writing code.
// The commands are in tools/cli/<group>.cpp; what they share in tools/cli/cli.hpp.
#include "cli.hpp"

#include <casecore/error.hpp>

#include <iostream>
#include <sstream>

using namespace casecore::cli;

int main(int argc, char** argv) {
  context ctx;
  CLI::App app{"casecore: inspect and repair casecore state", "casecore"};
  app.add_option("--db", ctx.db_url, "Database URL (sqlite:file.db, postgresql://...)")->envname("CASECORE_DB")->capture_default_str();
  app.add_flag("--json", ctx.json, "Machine-readable JSON output");
  app.require_subcommand(1);
  app.fallthrough(); // --db / --json may also follow the subcommand

  action run;
  add_migrate(app, ctx, run);
  add_status(app, ctx, run);
  add_metrics(app, ctx, run);
  add_outbox(app, ctx, run);
  add_counter(app, ctx, run);
  add_file(app, ctx, run);
  add_lease(app, ctx, run);
  add_job(app, ctx, run);
  add_trigger(app, ctx, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int code = app.exit(e, out, err);
    std::cout << text_lines(out.str()) << std::flush;
    std::cerr << text_lines(err.str()) << std::flush;
    return code == 0 ? exit_ok : exit_usage;
  }
  try {
    if (run) run();
    std::cout.flush();
    return std::cout ? exit_ok : exit_failure;
  } catch (const casecore::error& e) {
    std::cerr << "casecore: " << text(e.what()) << " [" << casecore::to_string(e.code()) << "]\n";
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "casecore: " << text(e.what()) << "\n";
    return exit_failure;
  }
}
