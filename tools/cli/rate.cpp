// `casecore rate show KEY` (tools/cli/cli.hpp): one shared rate limit's state, read-only.
#include "cli.hpp"

#include <casecore/rate_limiter.hpp>

#include <iostream>

namespace casecore::cli {

void add_rate(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("rate", "Shared rate limits (rate_limiter)");
  cmd->require_subcommand(1);
  auto key = std::make_shared<std::string>();

  auto* show = cmd->add_subcommand("show", "Show a rate limit key: its limit, the tokens used in the last period, the next free time");
  show->add_option("KEY", *key, "Rate limit key")->required();
  show->callback([&ctx, &run, key] {
    run = [&ctx, key] {
      auto db = open_migrated(ctx, "casecore.rate", access::read);
      const auto i = rate_limiter::inspect(db, *key);
      if (!i) raise(errc::not_found, "rate limit key '" + *key + "' was never used");
      // Tokens still counting against the limit: those younger than the period (database clock).
      std::int64_t used = 0;
      for (const auto t : i->log)
        if (t > i->now - i->period_us) ++used;
      // The oldest token frees next; with a free token, now.
      const micros next_free = used < i->count ? i->now : i->log.front() + i->period_us;
      if (ctx.json) {
        std::vector<std::string> log;
        for (const auto t : i->log) log.push_back(num(t));
        std::cout << object({{"key", quote(i->key)}, {"count", num(i->count)}, {"period_us", num(i->period_us)},
                             {"used", num(used)}, {"free", num(i->count - used)}, {"next_free_us", num(next_free)},
                             {"now_us", num(i->now)}, {"log_us", array(log)}})
                  << "\n";
        return;
      }
      print_row({"key", i->key});
      print_row({"limit", num(i->count) + " per " + num(i->period_us / 1000) + " ms"});
      print_row({"used", num(used) + " in the last period (" + num(i->count - used) + " free)"});
      print_row({"next_free", used < i->count ? std::string("now") : iso_time(next_free)});
      for (const auto t : i->log) print_row({"token", iso_time(t)});
    };
  });
}

} // namespace casecore::cli
