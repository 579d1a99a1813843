#include <casecore/migration.hpp>

#include <algorithm>
#include <map>

namespace casecore {

namespace {

// FNV-1a: a stable checksum of a migration's rendered SQL (not for security).
std::string checksum(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return std::to_string(h);
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

const std::string& pick_sql(dialect d, const migration& m) {
  if (d == dialect::sqlite && !m.sqlite_sql.empty()) return m.sqlite_sql;
  if (d == dialect::postgresql && !m.postgres_sql.empty()) return m.postgres_sql;
  return m.sql;
}

void validate(std::span<const migration> list) {
  std::map<std::pair<std::string, int>, bool> seen;
  for (const auto& m : list) {
    if (m.component.empty() || m.component.size() > 64) raise(errc::invalid_argument, "migration component must be 1..64 characters");
    if (m.version <= 0) raise(errc::invalid_argument, "migration " + m.component + " has a non-positive version");
    if (!seen.emplace(std::pair{m.component, m.version}, true).second)
      raise(errc::invalid_argument, "duplicate migration " + m.component + ":" + std::to_string(m.version));
  }
}

constexpr std::string_view ledger_sql =
    "CREATE TABLE IF NOT EXISTS casecore_migrations("
    " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL, PRIMARY KEY(component, version))";

} // namespace

std::string render_sql(const transaction& tx, std::string_view sql) {
  std::string out(sql);
  const auto& f = tx.sql();
  replace_all(out, "{{id}}", std::string(f.id_column));
  replace_all(out, "{{blob}}", std::string(f.blob_type));
  replace_all(out, "{{now_us}}", std::string(f.now_us));
  return out;
}

migration_report migrate(database& db, std::span<const migration> extra) {
  std::vector<migration> all = casecore_migrations();
  all.insert(all.end(), extra.begin(), extra.end());
  validate(all);
  std::stable_sort(all.begin(), all.end(), [](const migration& a, const migration& b) {
    // casecore's own components first (hosts' tables may reference them), then by version.
    const bool ca = a.component.starts_with("casecore"), cb = b.component.starts_with("casecore");
    if (ca != cb) return ca;
    return a.component == b.component ? a.version < b.version : false;
  });
  return db.write([&](transaction& tx) {
    migration_report report;
    // Concurrent migrators queue here (SQLite: BEGIN IMMEDIATE already serialises them).
    if (const auto lock = tx.sql().transaction_lock; !lock.empty()) tx.exec(lock, std::int64_t{7311180420250001});
    tx.exec_script(ledger_sql);
    std::map<std::pair<std::string, int>, std::string> applied;
    for (auto row : tx.exec("SELECT component, version, checksum FROM casecore_migrations"))
      applied[{row.get<std::string>(0), row.get<int>(1)}] = row.get<std::string>(2);
    for (const auto& m : all) {
      const auto sql = render_sql(tx, pick_sql(tx.dialect(), m));
      const auto sum = checksum(sql);
      if (auto it = applied.find({m.component, m.version}); it != applied.end()) {
        if (it->second != sum)
          raise(errc::invalid_argument, "migration " + m.component + ":" + std::to_string(m.version) +
                                            " was changed after it was applied (checksum mismatch)");
        continue;
      }
      tx.exec_script(sql);
      tx.exec("INSERT INTO casecore_migrations(component, version, name, checksum, applied_at) VALUES($1, $2, $3, $4, $5)",
              m.component, m.version, m.name, sum, tx.now_us());
      report.applied.push_back(m.component + ":" + std::to_string(m.version) + " " + m.name);
    }
    return report;
  });
}

int schema_version(database& db, std::string_view component) {
  return db.read([&](transaction& tx) {
    // The ledger may not exist yet on a fresh database.
    if (!tx.query_one<bool>(tx.sql().table_exists, "casecore_migrations")) return 0;
    return tx.query_one<int>("SELECT coalesce(max(version), 0) FROM casecore_migrations WHERE component = $1", component);
  });
}

} // namespace casecore
