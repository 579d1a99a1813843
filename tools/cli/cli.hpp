// tools/cli/cli.hpp — what the `casecore` commands share: options, exit codes, safe output.
//
// Every command takes --db URL (default sqlite:casecore.db, or $CASECORE_DB) and --json. Output goes
// to stdout, errors to stderr with a typed exit code (exit_code()); under --json an error is ALSO one
// JSON document on stdout ({"error":{"code","message","exit"}}), so a script reads one stream. Each command group lives in its
// own file (tools/cli/<group>.cpp) as one add_<group>() that registers a CLI11 subcommand and the
// action it runs.
//
// Hostile text: every string that came from the database or the command line is printed through
// text() (controls, DEL, C1, bidi overrides and invalid UTF-8 escaped, docs/cli.md), so a lease
// owner holding ESC sequences cannot drive the operator's terminal or forge table rows; --json is
// always valid UTF-8. Read-only commands open SQLite read-only and without create: a typo'd --db is
// an error, never a new file, and they never change the journal mode.
#pragma once

#include <casecore/database.hpp>
#include <casecore/error.hpp>

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace casecore::cli {

/// Exit codes operators and scripts can branch on.
enum exit_status : int {
  exit_ok = 0,
  exit_failure = 1,      ///< any other error
  exit_usage = 2,        ///< bad command line, URL or argument
  exit_unavailable = 3,  ///< database unreachable, busy, timed out
  exit_not_found = 4,    ///< the named object does not exist
  exit_conflict = 5,     ///< a concurrent change won (version, state, lease)
  exit_unhealthy = 6,    ///< `health`: a threshold was crossed (the output names it)
};

/// The exit code of an error.
int exit_code(errc code);

/// How a command uses the database.
enum class access {
  read,   ///< looks only: SQLite read-only, no create, journal mode untouched
  write,  ///< changes rows of an existing, migrated database: no create
  create, ///< migrate: may create the SQLite file (0600)
};

/// Options every command shares.
struct context {
  std::string db_url = "sqlite:casecore.db"; ///< --db / $CASECORE_DB
  bool json = false;                         ///< --json
  /// Exit code of a command that ran fine but reports a condition (health: exit_unhealthy).
  mutable int result = 0;
  /// Open the database for `mode`.
  database open_db(access mode) const;
};

/// What a parsed command runs.
using action = std::function<void()>;

/// Text for a terminal: controls and invalid UTF-8 escaped (detail/text.hpp).
std::string text(std::string_view s);
/// Multi-line text of our own (help, CLI11's usage errors): each line escaped, line breaks kept.
std::string text_lines(std::string_view s);

/// A JSON string (always valid UTF-8).
std::string quote(std::string_view s);
/// A JSON object of already-encoded values.
std::string object(const std::vector<std::pair<std::string, std::string>>& fields);
/// A JSON array of already-encoded values.
std::string array(const std::vector<std::string>& items);
/// A JSON number, exact: integers in full; a double as the shortest text that reads back to the same
/// value (std::to_chars), never to_string's fixed six decimals; NaN and infinities (no JSON number)
/// as null.
template <class N> std::string num(N n) {
  if constexpr (std::is_floating_point_v<N>) {
    if (!std::isfinite(n)) return "null";
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    return ec == std::errc{} ? std::string(buf, end) : "null";
  } else {
    return std::to_string(n);
  }
}
/// A JSON boolean.
std::string boolean(bool b);

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

/// "2025-03-01T12:00:00.123456Z" for a database-clock time; "-" for 0 (never).
std::string iso_time(micros t);
/// One tab-separated row of escaped cells (a TAB or newline inside a value never adds a column/row).
void print_row(const std::vector<std::string>& cells);

/// True for a plain SQL identifier (checked before a catalog name is put in SQL).
bool valid_identifier(std::string_view s);
/// component → applied version (empty before the first migrate).
std::map<std::string, int> schema_versions(database& db);
/// casecore_* table → row count.
std::map<std::string, std::int64_t> table_counts(database& db);
/// Open the database and check that `component`'s tables exist (an actionable message otherwise).
database open_migrated(const context& ctx, const std::string& component, access mode);

/// The command groups, one file each.
void add_migrate(CLI::App& app, const context& ctx, action& run);
void add_status(CLI::App& app, const context& ctx, action& run);
void add_metrics(CLI::App& app, const context& ctx, action& run);
void add_health(CLI::App& app, const context& ctx, action& run);
void add_outbox(CLI::App& app, const context& ctx, action& run);
void add_counter(CLI::App& app, const context& ctx, action& run);
void add_file(CLI::App& app, const context& ctx, action& run);
void add_lease(CLI::App& app, const context& ctx, action& run);
void add_job(CLI::App& app, const context& ctx, action& run);
void add_rate(CLI::App& app, const context& ctx, action& run);
void add_trigger(CLI::App& app, const context& ctx, action& run);
void add_schedule(CLI::App& app, const context& ctx, action& run);
void add_serve(CLI::App& app, const context& ctx, action& run);
/// `completion bash` and `man`, generated from the whole command table (tools/cli/help.cpp).
void add_help_commands(CLI::App& app, action& run);

/// "unknown command 'x' ..." when argv names a command `app` does not have (nullopt otherwise).
std::optional<std::string> unknown_command(const CLI::App& app, int argc, const char* const* argv);
/// A bash completion script for every command and option of `app`.
std::string bash_completion(const CLI::App& app);
/// The manual page casecore(1) in troff, from `app`'s commands and options.
std::string man_page(const CLI::App& app);
/// The JSON error document of --json: {"error":{"code":...,"message":...,"exit":...}}.
std::string json_error(std::string_view code, std::string_view message, int exit_status);

} // namespace casecore::cli
