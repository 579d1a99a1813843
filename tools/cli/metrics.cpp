// `casecore metrics` (tools/cli/cli.hpp): the database-wide figures, rendered by the same
// metrics::database_prometheus_text() that `casecore serve`'s /metrics uses. This process's own pool
// is left out: a one-shot command's pool says nothing about the deployment.
#include "cli.hpp"

#include <casecore/metrics.hpp>

#include <iostream>
#include <memory>

namespace casecore::cli {

void add_metrics(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("metrics", "Print the database-wide metrics in Prometheus text format");
  auto window = std::make_shared<int>(300);
  cmd->add_option("--window", *window, "Seconds of finished jobs and stages the recent_* figures cover")
      ->check(CLI::Range(1, 7 * 24 * 3600))
      ->capture_default_str();
  cmd->callback([&ctx, &run, window] {
    run = [&ctx, window] {
      auto db = ctx.open_db(access::read);
      metrics::exposition_options o;
      o.wide.window = std::chrono::seconds(*window);
      if (!ctx.json) {
        std::cout << metrics::database_prometheus_text(db, o);
        return;
      }
      metrics::sample_sink sink;
      metrics::collect_build_info(sink, db);
      metrics::collect_database_wide(sink, db, o.wide);
      std::vector<std::string> families;
      for (const auto& f : sink.take()) {
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
