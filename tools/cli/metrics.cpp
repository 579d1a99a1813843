// `casecore metrics` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

void register_metrics(metrics::registry& registry, database& db) {
  registry.add_database(db, "main");
  registry.add_collector([db](metrics::sample_sink& sink) mutable {
    for (const auto& [component, version] : schema_versions(db))
      sink.gauge("casecore_schema_version", "Applied schema version per component", {{"component", component}}, version);
    for (const auto& [table, rows] : table_counts(db))
      sink.gauge("casecore_table_rows", "Rows per casecore table", {{"table", table}}, static_cast<double>(rows));
  });
}

void add_metrics(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("metrics", "Print metrics in Prometheus text format")->callback([&] {
    run = [&] {
      auto db = ctx.open_db(access::read);
      metrics::registry registry;
      register_metrics(registry, db);
      if (!ctx.json) {
        std::cout << registry.prometheus_text();
        return;
      }
      std::vector<std::string> families;
      for (const auto& f : registry.collect()) {
        std::vector<std::string> samples;
        for (const auto& s : f.samples) {
          std::vector<std::pair<std::string, std::string>> labels;
          for (const auto& [k, v] : s.label_pairs) labels.emplace_back(k, quote(v));
          samples.push_back(object({{"name", quote(f.name + s.suffix)}, {"labels", object(labels)}, {"value", num(s.value)}}));
        }
        families.push_back(object({{"name", quote(f.name)}, {"type", quote(metrics::to_string(f.type))},
                                   {"help", quote(f.help)}, {"samples", array(samples)}}));
      }
      std::cout << array(families) << "\n";
    };
  });
}

} // namespace casecore::cli
