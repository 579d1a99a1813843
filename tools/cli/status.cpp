// `casecore status` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/migration.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

void add_status(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("status", "Show schema versions, pool figures and row counts")->callback([&] {
    run = [&] {
      auto db = ctx.open_db(access::read);
      const auto versions = schema_versions(db);
      const auto counts = table_counts(db);
      const auto p = db.pool_stats();
      if (ctx.json) {
        std::vector<std::pair<std::string, std::string>> v, c;
        for (const auto& [k, n] : versions) v.emplace_back(k, num(n));
        for (const auto& [k, n] : counts) c.emplace_back(k, num(n));
        std::cout << object({{"database", quote(db.describe())},
                             {"dialect", quote(db.dialect() == dialect::postgresql ? "postgresql" : "sqlite")},
                             {"schema", object(v)},
                             {"pool", object({{"capacity", num(p.capacity)}, {"in_use", num(p.in_use)}, {"idle", num(p.idle)},
                                              {"waiting", num(p.waiting)}, {"timeouts", num(p.timeouts)}})},
                             {"tables", object(c)}})
                  << "\n";
        return;
      }
      std::cout << "database  " << text(db.describe()) << "\n";
      std::cout << "schema   ";
      if (versions.empty()) std::cout << " (not migrated)";
      for (const auto& [k, n] : versions) std::cout << " " << text(k) << "=" << n;
      std::cout << "\npool      capacity=" << p.capacity << " in_use=" << p.in_use << " idle=" << p.idle
                << " waiting=" << p.waiting << " timeouts=" << p.timeouts << "\n";
      for (const auto& [k, n] : counts) std::cout << "table     " << text(k) << " " << n << "\n";
    };
  });
}

} // namespace casecore::cli
