// `casecore outbox pending` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/outbox.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

void add_outbox(CLI::App& app, const context& ctx, action& run) {
  auto* outbox_cmd = app.add_subcommand("outbox", "Inspect the durable outbox");
  outbox_cmd->require_subcommand(1);
  auto* pending = outbox_cmd->add_subcommand("pending", "Count messages of TOPIC not yet delivered");
  auto topic = std::make_shared<std::string>();
  pending->add_option("TOPIC", *topic, "Outbox topic")->required();
  pending->callback([&ctx, &run, topic] {
    run = [&ctx, topic] {
      auto db = ctx.open_db(access::read);
      const auto n = outbox::pending(db, *topic);
      if (ctx.json) std::cout << object({{"topic", quote(*topic)}, {"pending", num(n)}}) << "\n";
      else std::cout << n << "\n";
    };
  });
}

} // namespace casecore::cli
