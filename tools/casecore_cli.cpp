// casecore — the operator's command line: see and repair casecore state without writing code.
//
// Every command takes --db URL (default sqlite:casecore.db, or $CASECORE_DB) and --json. Output
// goes to stdout, errors to stderr with a typed exit code (see exit_code()). Each command is one
// add_<command>() function that registers a CLI11 subcommand and the action it runs.
//
// Hostile text: every string that came from the database or the command line is printed through
// text() (controls, DEL, C1, bidi overrides and invalid UTF-8 escaped, docs/cli.md), so a lease
// owner holding ESC sequences cannot drive the operator's terminal or forge table rows; --json is
// always valid UTF-8. Read-only commands open SQLite read-only and without create: a typo'd --db is
// an error, never a new file, and they never change the journal mode.
#include <casecore/detail/json.hpp>
#include <casecore/detail/text.hpp>
#include <casecore/counter.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/trigger.hpp>
#include <casecore/url.hpp>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace casecore;

/// Exit codes operators and scripts can branch on.
enum exit_status : int {
  exit_ok = 0,
  exit_failure = 1,      ///< any other error
  exit_usage = 2,        ///< bad command line, URL or argument
  exit_unavailable = 3,  ///< database unreachable, busy, timed out
  exit_not_found = 4,    ///< the named object does not exist
  exit_conflict = 5,     ///< a concurrent change won (version, state, lease)
};

int exit_code(errc code) {
  switch (code) {
    case errc::invalid_argument:
    case errc::bad_url:
    case errc::configuration:
    case errc::unsupported: return exit_usage;
    case errc::backend_unavailable:
    case errc::connection_lost:
    case errc::pool_timeout:
    case errc::busy:
    case errc::timeout: return exit_unavailable;
    case errc::not_found: return exit_not_found;
    case errc::already_exists:
    case errc::version_conflict:
    case errc::invalid_transition:
    case errc::lease_lost:
    case errc::serialization_failure:
    case errc::deadlock: return exit_conflict;
    default: return exit_failure;
  }
}

/// How a command uses the database.
enum class access {
  read,   ///< looks only: SQLite read-only, no create, journal mode untouched
  write,  ///< changes rows of an existing, migrated database: no create
  create, ///< migrate: may create the SQLite file (0600)
};

/// Options every command shares.
struct context {
  std::string db_url = "sqlite:casecore.db";
  bool json = false;
  database open_db(access mode) const {
    const auto url = parse_url(db_url);
    if (url.scheme != "sqlite") return casecore::open(db_url); // PostgreSQL reads run READ ONLY already
    sqlite::options o;
    o.read_only = mode == access::read;
    o.create = mode == access::create;
    return sqlite::open(url, {}, o);
  }
};

/// Text for a terminal: controls and invalid UTF-8 escaped (detail/text.hpp).
std::string text(std::string_view s) { return casecore::detail::escape_for_terminal(s); }

/// Multi-line text of our own (help, CLI11's usage errors, which quote the arguments): each line
/// escaped, the line breaks kept.
std::string text_lines(std::string_view s) {
  std::string out;
  for (std::size_t start = 0; start < s.size();) {
    const auto nl = s.find('\n', start);
    out += text(s.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) break;
    out += '\n';
    start = nl + 1;
  }
  return out;
}

// --- tiny JSON writer (the CLI's only JSON needs are flat objects and arrays) --------------------

std::string quote(std::string_view s) {
  std::string out;
  casecore::detail::append_json_string(out, s);
  return out;
}

std::string object(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out = "{";
  for (std::size_t i = 0; i < fields.size(); ++i) out += (i ? "," : "") + quote(fields[i].first) + ":" + fields[i].second;
  return out + "}";
}

std::string array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

template <class N> std::string num(N n) { return std::to_string(n); }

/// CLI11 turns "" into 0 and clamps an overflowing number to the limit; ids, tokens and limits are
/// checked here instead: optional sign, digits only, in range.
template <class N> CLI::Validator strict_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        N v{};
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc{} || end != s.data() + s.size())
          return "must be a whole number from " + std::to_string(std::numeric_limits<N>::min()) + " to " +
                 std::to_string(std::numeric_limits<N>::max());
        return {};
      },
      "INTEGER");
}

std::string boolean(bool b) { return b ? "true" : "false"; }

/// "2025-03-01T12:00:00.123456Z" for a database-clock time; "-" for 0 (never).
std::string iso_time(micros t) {
  if (t <= 0) return "-";
  const std::time_t secs = static_cast<std::time_t>(t / 1000000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(t % 1000000));
  return std::string(buf) + frac;
}

/// Text tables: tab-separated columns under a header line (pipe through `column -t` to align). Each
/// cell is escaped, so a TAB or newline inside a value can never add a column or a row.
void print_row(const std::vector<std::string>& cells) {
  for (std::size_t i = 0; i < cells.size(); ++i) std::cout << (i ? "\t" : "") << text(cells[i]);
  std::cout << "\n";
}

// --- shared queries ------------------------------------------------------------------------------

bool valid_identifier(std::string_view s) {
  if (s.empty() || s.size() > 63 || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

/// component → applied version (empty before the first migrate).
std::map<std::string, int> schema_versions(database& db) {
  return db.read([](transaction& tx) {
    std::map<std::string, int> out;
    const bool exists = tx.dialect() == dialect::postgresql
                            ? tx.query_one<bool>("SELECT to_regclass('casecore_migrations') IS NOT NULL")
                            : tx.query_one<bool>("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'casecore_migrations'");
    if (!exists) return out;
    for (auto r : tx.exec("SELECT component, max(version) FROM casecore_migrations GROUP BY component ORDER BY component"))
      out[r.get<std::string>(0)] = r.get<int>(1);
    return out;
  });
}

/// casecore_* table → row count.
std::map<std::string, std::int64_t> table_counts(database& db) {
  return db.read([](transaction& tx) {
    const char* list_sql = tx.dialect() == dialect::postgresql
                               ? "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                                 "AND table_name LIKE 'casecore\\_%' ESCAPE '\\' ORDER BY table_name"
                               : "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'casecore\\_%' ESCAPE '\\' "
                                 "ORDER BY name";
    std::map<std::string, std::int64_t> out;
    for (auto r : tx.exec(list_sql)) {
      const auto name = r.get<std::string>(0);
      // Names come from the catalog, but are checked before they are put in SQL all the same.
      if (!valid_identifier(name)) continue;
      out[name] = tx.query_one<std::int64_t>("SELECT count(*) FROM " + name);
    }
    return out;
  });
}

/// Open the database and check that `component`'s tables exist, so an unmigrated database gets an
/// actionable message instead of a "no such table" error.
database open_migrated(const context& ctx, const std::string& component, access mode) {
  auto db = ctx.open_db(mode);
  if (!schema_versions(db).contains(component))
    raise(errc::backend_error, "the database has no " + component + " schema: run `casecore migrate` first");
  return db;
}

// --- commands ------------------------------------------------------------------------------------

using action = std::function<void()>;

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

void add_metrics(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("metrics", "Print metrics in Prometheus text format")->callback([&] {
    run = [&] {
      auto db = ctx.open_db(access::read);
      metrics::registry registry;
      registry.add_database(db, "main");
      registry.add_collector([&](metrics::sample_sink& sink) {
        for (const auto& [component, version] : schema_versions(db))
          sink.gauge("casecore_schema_version", "Applied schema version per component", {{"component", component}}, version);
        for (const auto& [table, rows] : table_counts(db))
          sink.gauge("casecore_table_rows", "Rows per casecore table", {{"table", table}}, static_cast<double>(rows));
      });
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

// --- jobs ----------------------------------------------------------------------------------------

std::string stage_of(const jobs::job& j) {
  const auto at = static_cast<std::size_t>(j.current_stage);
  return at < j.stages.size() ? j.stages[at] : "done";
}

std::string job_json(const jobs::job& j) {
  std::vector<std::string> stages;
  for (const auto& s : j.stages) stages.push_back(quote(s));
  return object({{"id", num(j.id)}, {"operation", quote(j.operation)}, {"subject", quote(j.subject)},
                 {"state", quote(jobs::to_string(j.state))}, {"stages", array(stages)}, {"current_stage", num(j.current_stage)},
                 {"priority", num(j.priority)}, {"attempts", num(j.attempts)}, {"max_attempts", num(j.max_attempts)},
                 {"concurrency_key", quote(j.concurrency_key)}, {"cancel_requested", boolean(j.cancel_requested)},
                 {"lease_owner", quote(j.lease_owner)}, {"lease_epoch", num(j.lease_epoch)},
                 {"lease_expires_at_us", num(j.lease_expires_at)}, {"heartbeat_at_us", num(j.heartbeat_at)},
                 {"run_at_us", num(j.run_at)}, {"last_error", quote(j.last_error)}, {"created_at_us", num(j.created_at)},
                 {"finished_at_us", num(j.finished_at)}});
}

std::string stage_json(const jobs::stage_record& s) {
  return object({{"stage", quote(s.stage)}, {"position", num(s.position)}, {"state", quote(s.state)}, {"attempts", num(s.attempts)},
                 {"started_at_us", num(s.started_at)}, {"finished_at_us", num(s.finished_at)},
                 {"duration_us", num(s.finished_at - s.started_at)}, {"error", quote(s.error)}});
}

jobs::job existing_job(database& db, std::int64_t id) {
  auto j = jobs::get(db, id);
  if (!j) raise(errc::not_found, "job " + std::to_string(id) + " does not exist");
  return *j;
}

void print_job(const jobs::job& j, const std::vector<jobs::stage_record>& stages) {
  std::cout << "job       " << j.id << "\n"
            << "state     " << jobs::to_string(j.state) << (j.cancel_requested && j.state == jobs::job_state::running ? " (cancel requested)" : "") << "\n"
            << "operation " << text(j.operation) << "\n"
            << "subject   " << text(j.subject) << "\n"
            << "stage     " << text(stage_of(j)) << " (" << j.current_stage << "/" << j.stages.size() << ")\n"
            << "attempts  " << j.attempts << "/" << j.max_attempts << "\n"
            << "priority  " << j.priority << "\n";
  if (!j.concurrency_key.empty()) std::cout << "key       " << text(j.concurrency_key) << "\n";
  if (j.state == jobs::job_state::running)
    std::cout << "worker    " << text(j.lease_owner) << " (epoch " << j.lease_epoch << ", lease until " << iso_time(j.lease_expires_at) << ")\n";
  std::cout << "created   " << iso_time(j.created_at) << "\n"
            << "run_at    " << iso_time(j.run_at) << "\n"
            << "finished  " << iso_time(j.finished_at) << "\n";
  if (!j.last_error.empty()) std::cout << "error     " << text(j.last_error) << "\n";
  std::cout << "\n";
  print_row({"position", "stage", "state", "attempts", "started_at", "duration_ms", "error"});
  for (std::size_t i = 0; i < j.stages.size(); ++i) {
    const auto rec = std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.position == static_cast<int>(i); });
    if (rec == stages.end()) {
      print_row({num(i), j.stages[i], "pending", "0", "-", "-", ""});
      continue;
    }
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", static_cast<double>(rec->finished_at - rec->started_at) / 1000.0);
    print_row({num(i), rec->stage, rec->state, num(rec->attempts), iso_time(rec->started_at), ms, rec->error});
  }
}

void add_job(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("job", "The durable job queue");
  cmd->require_subcommand(1);
  struct args_t {
    std::string state;
    std::size_t limit = 100;
    std::int64_t id = 0;
  };
  auto args = std::make_shared<args_t>();

  auto* list = cmd->add_subcommand("list", "List jobs, newest first");
  list->add_option("--state", args->state, "queued, running, succeeded, failed or cancelled");
  list->add_option("--limit", args->limit, "At most this many (1..10000)")->check(strict_integer<std::size_t>())->capture_default_str();
  list->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      std::optional<jobs::job_state> state;
      if (!args->state.empty()) {
        state = jobs::state_from_string(args->state);
        if (!state) raise(errc::invalid_argument, "unknown job state '" + args->state + "' (queued, running, succeeded, failed, cancelled)");
      }
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto all = jobs::list(db, state, args->limit);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& j : all) items.push_back(job_json(j));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"id", "state", "stage", "attempts", "operation", "subject", "created_at", "last_error"});
      for (const auto& j : all)
        print_row({num(j.id), std::string(jobs::to_string(j.state)), stage_of(j), num(j.attempts) + "/" + num(j.max_attempts),
                   j.operation, j.subject, iso_time(j.created_at), j.last_error});
    };
  });

  auto* show = cmd->add_subcommand("show", "Show one job with its stages, timings and errors");
  show->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  show->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto j = existing_job(db, args->id);
      const auto stages = jobs::stages(db, args->id);
      if (!ctx.json) {
        print_job(j, stages);
        return;
      }
      std::vector<std::string> items;
      for (const auto& s : stages) items.push_back(stage_json(s));
      std::cout << object({{"job", job_json(j)}, {"stages", array(items)}}) << "\n";
    };
  });

  auto* retry = cmd->add_subcommand("retry", "Requeue a failed or cancelled job at the stage where it stopped");
  retry->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  retry->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      const auto j = jobs::retry(db, args->id);
      if (ctx.json) std::cout << job_json(j) << "\n";
      else std::cout << "requeued job " << j.id << " at stage " << text(stage_of(j)) << " (" << j.current_stage << "/" << j.stages.size() << ")\n";
    };
  });

  auto* cancel = cmd->add_subcommand("cancel", "Cancel a queued job, or ask a running one to stop");
  cancel->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  cancel->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      existing_job(db, args->id); // not_found before anything is written
      if (!jobs::cancel(db, args->id))
        raise(errc::invalid_transition, "job " + std::to_string(args->id) + " is " + std::string(jobs::to_string(existing_job(db, args->id).state)) +
                                            ": only queued or running jobs can be cancelled");
      const auto after = existing_job(db, args->id);
      const bool ended = after.state == jobs::job_state::cancelled;
      if (ctx.json) std::cout << object({{"id", num(after.id)}, {"state", quote(jobs::to_string(after.state))}, {"cancel_requested", boolean(after.cancel_requested)}}) << "\n";
      else if (ended) std::cout << "cancelled job " << after.id << "\n";
      else std::cout << "cancel requested for running job " << after.id << " (worker " << text(after.lease_owner)
                     << " stops at its next stage boundary or heartbeat)\n";
    };
  });

  auto* stats = cmd->add_subcommand("stats", "Counts by state and stage, ready jobs, oldest ready age, stuck jobs");
  stats->callback([&ctx, &run] {
    run = [&ctx] {
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto q = jobs::inspect(db);
      if (ctx.json) {
        std::vector<std::pair<std::string, std::string>> by_state, by_stage;
        for (const auto& [k, n] : q.by_state) by_state.emplace_back(k, num(n));
        for (const auto& [k, n] : q.active_by_stage) by_stage.emplace_back(k, num(n));
        std::vector<std::string> stuck;
        for (auto id : q.stuck) stuck.push_back(num(id));
        std::cout << object({{"by_state", object(by_state)}, {"active_by_stage", object(by_stage)}, {"ready", num(q.ready)},
                             {"oldest_ready_age_us", num(q.oldest_ready_age)}, {"stuck", array(stuck)}})
                  << "\n";
        return;
      }
      for (auto st : {jobs::job_state::queued, jobs::job_state::running, jobs::job_state::succeeded, jobs::job_state::failed,
                      jobs::job_state::cancelled}) {
        const auto it = q.by_state.find(std::string(jobs::to_string(st)));
        std::cout << "state " << jobs::to_string(st) << " " << (it == q.by_state.end() ? 0 : it->second) << "\n";
      }
      for (const auto& [k, n] : q.active_by_stage) std::cout << "stage " << text(k) << " " << n << "\n";
      char age[32];
      std::snprintf(age, sizeof age, "%.3f", static_cast<double>(q.oldest_ready_age) / 1e6);
      std::cout << "ready " << q.ready << "\noldest_ready_age_s " << age << "\nstuck";
      for (auto id : q.stuck) std::cout << " " << id;
      std::cout << "\n";
    };
  });
}

// --- triggers ------------------------------------------------------------------------------------

void add_trigger(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("trigger", "Signed trigger requests (cron calls, webhooks)");
  cmd->require_subcommand(1);
  cmd->add_subcommand("new-secret", "Print a new trigger secret: 32 random bytes from the OS CSPRNG as 64 hex digits")
      ->callback([&ctx, &run] {
        run = [&ctx] {
          const auto secret = trigger::new_secret();
          if (ctx.json) std::cout << object({{"secret", quote(secret)}, {"bits", num(256)}}) << "\n";
          else std::cout << secret << "\n";
        };
      });
}

} // namespace

int main(int argc, char** argv) {
  context ctx;
  CLI::App app{"casecore: inspect and repair casecore state", "casecore"};
  app.add_option("--db", ctx.db_url, "Database URL (sqlite:file.db, postgresql://...)")->envname("CASECORE_DB")->capture_default_str();
  app.add_flag("--json", ctx.json, "Machine-readable JSON output");
  app.require_subcommand(1);
  app.fallthrough(); // --db / --json may also follow the subcommand

  action run;
  add_migrate(app, ctx, run);
  add_status(app, ctx, run);
  add_metrics(app, ctx, run);
  add_outbox(app, ctx, run);
  add_counter(app, ctx, run);
  add_file(app, ctx, run);
  add_lease(app, ctx, run);
  add_job(app, ctx, run);
  add_trigger(app, ctx, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int code = app.exit(e, out, err);
    std::cout << text_lines(out.str()) << std::flush;
    std::cerr << text_lines(err.str()) << std::flush;
    return code == 0 ? exit_ok : exit_usage;
  }
  try {
    if (run) run();
    std::cout.flush();
    return std::cout ? exit_ok : exit_failure;
  } catch (const casecore::error& e) {
    std::cerr << "casecore: " << text(e.what()) << " [" << casecore::to_string(e.code()) << "]\n";
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "casecore: " << text(e.what()) << "\n";
    return exit_failure;
  }
}
