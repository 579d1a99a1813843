// What the `casecore` commands share (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/detail/text.hpp>
#include <casecore/open.hpp>
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/url.hpp>

#include <cstdio>
#include <ctime>
#include <iostream>

namespace casecore::cli {

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

database context::open_db(access mode) const {
    const auto url = parse_url(db_url);
    if (url.scheme != "sqlite") return casecore::open(db_url); // PostgreSQL reads run READ ONLY already
    sqlite::options o;
    o.read_only = mode == access::read;
    o.create = mode == access::create;
    return sqlite::open(url, {}, o);
  }

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

std::string boolean(bool b) { return b ? "true" : "false"; }

std::string json_error(std::string_view code, std::string_view message, int exit_status) {
  return object({{"error", object({{"code", quote(code)}, {"message", quote(message)}, {"exit", num(exit_status)}})}});
}

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
    if (!tx.query_one<bool>(tx.sql().table_exists, "casecore_migrations")) return out;
    for (auto r : tx.exec("SELECT component, max(version) FROM casecore_migrations GROUP BY component ORDER BY component"))
      out[r.get<std::string>(0)] = r.get<int>(1);
    return out;
  });
}

/// casecore_* table → row count.
std::map<std::string, std::int64_t> table_counts(database& db) {
  return db.read([](transaction& tx) {
    std::map<std::string, std::int64_t> out;
    for (auto r : tx.exec(tx.sql().tables_like, "casecore\\_%")) {
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

} // namespace casecore::cli
