// `casecore trigger new-secret` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/trigger.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

// --- triggers ------------------------------------------------------------------------------------

void add_trigger(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("trigger", "Signed trigger requests (cron calls, webhooks)");
  cmd->require_subcommand(1);
  cmd->add_subcommand("new-secret", "Print a new trigger secret: 32 random bytes from the OS CSPRNG as 64 hex digits")
      ->callback([&ctx, &run] {
        run = [&ctx] {
          const auto secret = trigger::new_secret();
          if (ctx.json) std::cout << object({{"secret", quote(secret)}, {"bits", num(256)}}) << "\n";
          else std::cout << secret << "\n";
        };
      });
}

} // namespace casecore::cli
