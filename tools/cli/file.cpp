// `casecore file register|list` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/file_registry.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/url.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

// --- files ---------------------------------------------------------------------------------------

/// --blobs, else $CASECORE_BLOBS, else `<stem>.blobs` beside an SQLite file. Never a folder in the
/// current directory by default: wherever the operator happens to stand (a shared or world-writable
/// folder) is not a place to trust with evidence, so PostgreSQL needs the folder named.
std::filesystem::path blob_dir(const context& ctx, const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("CASECORE_BLOBS"); env && *env) return env;
  const auto url = parse_url(ctx.db_url);
  if (url.scheme == "sqlite" && url.target != ":memory:" && !url.target.starts_with("file:")) {
    const auto db_file = std::filesystem::absolute(url.target);
    return db_file.parent_path() / (db_file.stem().string() + ".blobs");
  }
  raise(errc::invalid_argument, "name the blob folder with --blobs DIR or CASECORE_BLOBS (there is no default for this database)");
}

std::string default_actor() {
  const char* user = std::getenv("USER");
  return user && *user ? std::string("cli:") + user : "cli";
}

std::string file_json(const file_record& f) {
  return object({{"id", num(f.id)}, {"case", quote(f.case_id)}, {"name", quote(f.original_name)}, {"sha256", quote(f.sha256)},
                 {"size", num(f.size)}, {"registered_by", quote(f.registered_by)}, {"registered_at_us", num(f.registered_at)}});
}

void add_file(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("file", "Registered files of cases");
  cmd->require_subcommand(1);
  struct args_t {
    std::string case_id, path, blobs, name, actor;
  };
  auto args = std::make_shared<args_t>();

  auto* reg = cmd->add_subcommand("register", "Register the file at PATH for CASE (idempotent per content and name)");
  reg->add_option("CASE", args->case_id, "Case id")->required();
  reg->add_option("PATH", args->path, "File to register")->required();
  reg->add_option("--blobs", args->blobs, "Blob directory (default: $CASECORE_BLOBS, or <db>.blobs beside an SQLite file; required for PostgreSQL)");
  reg->add_option("--name", args->name, "Original name to record (default: PATH's file name)");
  reg->add_option("--actor", args->actor, "Who registers it (default: cli:$USER)");
  reg->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      const auto name = args->name.empty() ? std::filesystem::path(args->path).filename().string() : args->name;
      validate_file_name(name);
      auto db = open_migrated(ctx, "casecore.files", access::write);
      const auto dir = blob_dir(ctx, args->blobs);
      auto store = make_local_blob_store(dir);
      file_registry files(db, *store);
      const auto r = files.register_path(args->case_id, args->path, name, args->actor.empty() ? default_actor() : args->actor);
      const char* status = r.status == registration_status::registered ? "registered" : "duplicate";
      if (ctx.json) {
        std::cout << object({{"status", quote(status)}, {"id", num(r.id)}, {"sha256", quote(r.sha256)}, {"size", num(r.size)},
                             {"registered_by", quote(r.registered_by)}, {"registered_at_us", num(r.registered_at)},
                             {"blobs", quote(dir.string())}})
                  << "\n";
        return;
      }
      std::cout << status << " " << r.id << " " << text(r.sha256) << "\n";
      if (r.status == registration_status::duplicate)
        std::cout << "first registered by " << text(r.registered_by) << " at " << iso_time(r.registered_at) << "\n";
    };
  });

  auto* list = cmd->add_subcommand("list", "List the files registered for CASE");
  list->add_option("CASE", args->case_id, "Case id")->required();
  list->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.files", access::read);
      auto no_blobs = make_memory_blob_store(); // listing reads rows only
      const auto all = file_registry(db, *no_blobs).files_of_case(args->case_id);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& f : all) items.push_back(file_json(f));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"id", "sha256", "size", "name", "registered_by", "registered_at"});
      for (const auto& f : all)
        print_row({num(f.id), f.sha256, num(f.size), f.original_name, f.registered_by, iso_time(f.registered_at)});
    };
  });
}

} // namespace casecore::cli
