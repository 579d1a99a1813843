// `casecore lease list|release` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/lease.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

// --- leases --------------------------------------------------------------------------------------

std::string lease_json(const lease::info& l) {
  return object({{"name", quote(l.name)}, {"owner", quote(l.owner)}, {"token", num(l.token)}, {"held", boolean(l.held)},
                 {"expires_at_us", num(l.expires_at)}, {"acquired_at_us", num(l.acquired_at)}});
}

/// A forced release needs the lease name typed twice: --confirm NAME, --yes, or typed at a prompt.
void confirm_force(const std::string& name, const std::string& confirmation, bool yes) {
  if (yes || confirmation == name) return;
  if (!confirmation.empty()) raise(errc::invalid_argument, "--confirm does not match the lease name; nothing released");
  if (::isatty(STDIN_FILENO)) {
    std::cerr << "Forcing '" << text(name) << "' lets another holder in while the current one may still be running.\n"
              << "Type the lease name to confirm: " << std::flush;
    std::string typed;
    std::getline(std::cin, typed);
    if (typed == name) return;
  }
  raise(errc::invalid_argument, "a forced release needs --confirm NAME or --yes; nothing released");
}

void add_lease(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("lease", "Named leases with fencing tokens");
  cmd->require_subcommand(1);
  struct args_t {
    std::string prefix, name, owner, confirmation;
    std::int64_t token = 0;
    bool force = false, yes = false;
  };
  auto args = std::make_shared<args_t>();

  auto* list = cmd->add_subcommand("list", "List leases (held or not), by name");
  list->add_option("--prefix", args->prefix, "Only names starting with this");
  list->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.lease", access::read);
      const auto all = lease::list(db, args->prefix);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& l : all) items.push_back(lease_json(l));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"name", "owner", "token", "held", "expires_at", "acquired_at"});
      for (const auto& l : all)
        print_row({l.name, l.owner, num(l.token), l.held ? "yes" : "no", iso_time(l.expires_at), iso_time(l.acquired_at)});
    };
  });

  auto* rel = cmd->add_subcommand("release", "Release NAME held by --owner with --token, or --force it (dangerous)");
  rel->add_option("NAME", args->name, "Lease name")->required();
  auto* owner = rel->add_option("--owner", args->owner, "The holder's owner name");
  auto* token = rel->add_option("--token", args->token, "The holder's fencing token")->check(strict_integer<std::int64_t>());
  auto* force = rel->add_flag("--force", args->force, "Release whoever holds it (see docs/cli.md)");
  rel->add_option("--confirm", args->confirmation, "With --force: the lease name again");
  rel->add_flag("--yes", args->yes, "With --force: skip the confirmation");
  force->excludes(owner)->excludes(token);
  owner->needs(token);
  token->needs(owner);
  rel->callback([&ctx, &run, args] {
    if (!args->force && args->owner.empty()) throw CLI::ValidationError("lease release", "give --owner and --token, or --force");
    run = [&ctx, args] {
      if (args->force) {
        confirm_force(args->name, args->confirmation, args->yes);
        auto db = open_migrated(ctx, "casecore.lease", access::write);
        const auto before = lease::force_release(db, args->name);
        if (ctx.json) {
          std::cout << object({{"name", quote(args->name)}, {"forced", "true"}, {"was_held", boolean(before.held)},
                               {"owner", quote(before.owner)}, {"token", num(before.token)},
                               {"expires_at_us", num(before.expires_at)}})
                    << "\n";
          return;
        }
        if (!before.held) {
          std::cout << "lease " << text(args->name) << " was not held (last holder " << text(before.owner) << ", token " << before.token << ")\n";
          return;
        }
        std::cout << "force-released " << text(args->name) << ": it was held by " << text(before.owner) << " (token " << before.token
                  << ", until " << iso_time(before.expires_at) << ")\n"
                  << "warning: " << text(before.owner) << " may still be running; only writes fenced by its token are refused\n";
        return;
      }
      auto db = open_migrated(ctx, "casecore.lease", access::write);
      if (!lease::release(db, lease::grant{args->name, args->owner, args->token, 0})) {
        const auto now = lease::inspect(db, args->name);
        if (!now) raise(errc::not_found, "lease '" + args->name + "' was never acquired");
        raise(errc::lease_lost, "lease '" + args->name + "' is not held by " + args->owner + " with token " +
                                    std::to_string(args->token) + " (last holder " + now->owner + ", token " +
                                    std::to_string(now->token) + (now->held ? ", held" : ", expired") + ")");
      }
      if (ctx.json)
        std::cout << object({{"name", quote(args->name)}, {"released", "true"}, {"owner", quote(args->owner)}, {"token", num(args->token)}})
                  << "\n";
      else
        std::cout << "released " << text(args->name) << "\n";
    };
  });
}

} // namespace casecore::cli
