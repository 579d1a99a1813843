// `casecore counter next|show` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/counter.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

// --- counters ------------------------------------------------------------------------------------

void add_counter(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("counter", "Business counters (work-order numbers, invoice numbers)");
  cmd->require_subcommand(1);
  struct args_t {
    std::string name, scope, format;
  };
  auto args = std::make_shared<args_t>();

  auto* next = cmd->add_subcommand("next", "Allocate the next number of NAME (gapless, unique across processes)");
  next->add_option("NAME", args->name, "Counter name")->required();
  next->add_option("--scope", args->scope, "Scope, e.g. a year");
  next->add_option("--format", args->format, "Pattern such as 'WO-{scope}-{n:06}'");
  next->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      counter::check_name(args->name);
      counter::check_scope(args->scope);
      // Validate the pattern before a number is taken: a bad pattern must not burn one.
      if (!args->format.empty()) counter::format_number(args->format, args->scope, 1, args->name);
      auto db = open_migrated(ctx, "casecore.counters", access::write);
      // The in-transaction next: the number is gapless (the standalone next(db) prefetches blocks and
      // would leave gaps when this short-lived process exits).
      const auto n = db.write([&](transaction& tx) { return counter::next(tx, args->name, args->scope); });
      const auto formatted = args->format.empty() ? std::string{} : counter::format_number(args->format, args->scope, n, args->name);
      if (ctx.json) {
        std::vector<std::pair<std::string, std::string>> f{{"name", quote(args->name)}, {"scope", quote(args->scope)}, {"number", num(n)}};
        if (!args->format.empty()) f.emplace_back("formatted", quote(formatted));
        std::cout << object(f) << "\n";
      } else {
        std::cout << (args->format.empty() ? num(n) : text(formatted)) << "\n";
      }
    };
  });

  auto* show = cmd->add_subcommand("show", "Show current values (every counter when NAME is omitted)");
  show->add_option("NAME", args->name, "Counter name");
  auto* scope_opt = show->add_option("--scope", args->scope, "Only this scope");
  show->callback([&ctx, &run, args, scope_opt] {
    const bool by_scope = scope_opt->count() > 0;
    run = [&ctx, args, by_scope] {
      if (!args->name.empty()) counter::check_name(args->name);
      if (by_scope) counter::check_scope(args->scope);
      auto db = open_migrated(ctx, "casecore.counters", access::read);
      auto all = db.read([&](transaction& tx) { return counter::list(tx, args->name); });
      std::erase_if(all, [&](const counter::entry& e) { return by_scope && e.scope != args->scope; });
      if (all.empty() && (!args->name.empty() || by_scope))
        raise(errc::not_found, "no counter " + (args->name.empty() ? std::string("") : "'" + args->name + "' ") +
                                   (by_scope ? "in scope '" + args->scope + "'" : "has been used"));
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& e : all)
          items.push_back(object({{"name", quote(e.name)}, {"scope", quote(e.scope)}, {"value", num(e.value)}}));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"name", "scope", "value"});
      for (const auto& e : all) print_row({e.name, e.scope, num(e.value)});
    };
  });
}

} // namespace casecore::cli
