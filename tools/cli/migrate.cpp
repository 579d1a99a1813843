// `casecore migrate` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/migration.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

void add_migrate(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("migrate", "Apply casecore's schema migrations (safe to run concurrently)")->callback([&] {
    run = [&] {
      auto db = ctx.open_db(access::create);
      const auto report = migrate(db);
      if (ctx.json) {
        std::vector<std::string> applied;
        for (const auto& a : report.applied) applied.push_back(quote(a));
        std::vector<std::pair<std::string, std::string>> versions;
        for (const auto& [c, v] : schema_versions(db)) versions.emplace_back(c, num(v));
        std::cout << object({{"applied", array(applied)}, {"versions", object(versions)}}) << "\n";
      } else {
        for (const auto& a : report.applied) std::cout << "applied " << text(a) << "\n";
        std::cout << (report.applied.empty() ? "schema is up to date" : "done") << "\n";
      }
    };
  });
}

} // namespace casecore::cli
