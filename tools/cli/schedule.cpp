// `casecore schedule list` (tools/cli/cli.hpp): periodic jobs, their next and last runs.
#include "cli.hpp"

#include <casecore/schedule.hpp>

#include <iostream>

namespace casecore::cli {

namespace {

// "cron 30 2 * * * Europe/Berlin" or "every 60s"; the raw fields are in the JSON.
std::string describe(const schedules::schedule& s) {
  if (!s.cron.empty()) return s.cron;
  const auto secs = s.every.count() / 1000;
  std::string out = "every " + std::to_string(secs) + "s";
  if (s.offset.count() != 0) out += " +" + std::to_string(s.offset.count() / 1000) + "s";
  return out;
}

std::string schedule_json(const schedules::schedule_info& i) {
  const auto& s = i.spec;
  return object({{"name", quote(s.name)},
                 {"kind", quote(s.cron.empty() ? "interval" : "cron")},
                 {"cron", quote(s.cron)},
                 {"zone", quote(s.zone)},
                 {"every_ms", num(s.every.count())},
                 {"offset_ms", num(s.offset.count())},
                 {"catch_up", quote(schedules::to_string(s.policy))},
                 {"catch_up_limit", num(s.catch_up_limit)},
                 {"grace_ms", num(s.grace.count())},
                 {"operation", quote(s.job.operation)},
                 {"subject", quote(s.job.subject)},
                 {"next_run_us", num(i.next_at)},
                 {"last_tick_us", num(i.last_tick_at)},
                 {"last_job_id", num(i.last_job_id)},
                 {"cursor_us", num(i.cursor_at)}});
}

} // namespace

void add_schedule(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("schedule", "Periodic jobs (cron with a time zone, or intervals)");
  cmd->require_subcommand(1);
  auto* list = cmd->add_subcommand("list", "List schedules by name: spec, zone, next run, last run and its job");
  list->callback([&ctx, &run] {
    run = [&ctx] {
      auto db = open_migrated(ctx, "casecore.schedules", access::read);
      const auto all = schedules::list(db);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& i : all) items.push_back(schedule_json(i));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"name", "spec", "zone", "catch_up", "operation", "next_run", "last_run", "last_job"});
      for (const auto& i : all)
        print_row({i.spec.name, describe(i.spec), i.spec.zone, std::string(schedules::to_string(i.spec.policy)),
                   i.spec.job.operation, iso_time(i.next_at), iso_time(i.last_tick_at),
                   i.last_job_id ? num(i.last_job_id) : "-"});
    };
  });
}

} // namespace casecore::cli
