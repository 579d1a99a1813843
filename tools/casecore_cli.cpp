// casecore — the operator's command line: see and repair casecore state without writing code.
//
// Every command takes --db URL (default sqlite:casecore.db, or $CASECORE_DB) and --json. Output
// goes to stdout, errors to stderr with a typed exit code (see exit_code()). Each command is one
// add_<command>() function that registers a CLI11 subcommand and the action it runs; new commands
// (counters, files, leases, jobs) are added the same way.
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/outbox.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
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

/// Options every command shares.
struct context {
  std::string db_url = "sqlite:casecore.db";
  bool json = false;
  database open_db() const { return casecore::open(db_url); }
};

// --- tiny JSON writer (the CLI's only JSON needs are flat objects and arrays) --------------------

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else out += c;
  }
  return out + "\"";
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

// --- commands ------------------------------------------------------------------------------------

using action = std::function<void()>;

void add_migrate(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("migrate", "Apply casecore's schema migrations (safe to run concurrently)")->callback([&] {
    run = [&] {
      auto db = ctx.open_db();
      const auto report = migrate(db);
      if (ctx.json) {
        std::vector<std::string> applied;
        for (const auto& a : report.applied) applied.push_back(quote(a));
        std::vector<std::pair<std::string, std::string>> versions;
        for (const auto& [c, v] : schema_versions(db)) versions.emplace_back(c, num(v));
        std::cout << object({{"applied", array(applied)}, {"versions", object(versions)}}) << "\n";
      } else {
        for (const auto& a : report.applied) std::cout << "applied " << a << "\n";
        std::cout << (report.applied.empty() ? "schema is up to date" : "done") << "\n";
      }
    };
  });
}

void add_status(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("status", "Show schema versions, pool figures and row counts")->callback([&] {
    run = [&] {
      auto db = ctx.open_db();
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
      std::cout << "database  " << db.describe() << "\n";
      std::cout << "schema   ";
      if (versions.empty()) std::cout << " (not migrated)";
      for (const auto& [k, n] : versions) std::cout << " " << k << "=" << n;
      std::cout << "\npool      capacity=" << p.capacity << " in_use=" << p.in_use << " idle=" << p.idle
                << " waiting=" << p.waiting << " timeouts=" << p.timeouts << "\n";
      for (const auto& [k, n] : counts) std::cout << "table     " << k << " " << n << "\n";
    };
  });
}

void add_metrics(CLI::App& app, const context& ctx, action& run) {
  app.add_subcommand("metrics", "Print metrics in Prometheus text format")->callback([&] {
    run = [&] {
      auto db = ctx.open_db();
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
      auto db = ctx.open_db();
      const auto n = outbox::pending(db, *topic);
      if (ctx.json) std::cout << object({{"topic", quote(*topic)}, {"pending", num(n)}}) << "\n";
      else std::cout << n << "\n";
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  try {
    if (run) run();
    std::cout.flush();
    return std::cout ? exit_ok : exit_failure;
  } catch (const casecore::error& e) {
    std::cerr << "casecore: " << e.what() << " [" << casecore::to_string(e.code()) << "]\n";
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "casecore: " << e.what() << "\n";
    return exit_failure;
  }
}
