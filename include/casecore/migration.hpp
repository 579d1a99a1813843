// casecore/migration.hpp — versioned schema migrations, identical in effect on both backends.
//
// Migrations belong to a component ("casecore", or the host's own "myapp") and are applied in
// version order, each recorded with a checksum in casecore_migrations. All pending migrations run
// in one write transaction that first takes a migration lock (pg_advisory_xact_lock on PostgreSQL,
// the single writer lock on SQLite), so two processes migrating at once apply each step once.
// Editing an applied migration is detected (checksum mismatch) and refused.
// SQL tokens: {{id}} (auto-increment primary key), {{blob}} (BLOB / BYTEA).
#pragma once

#include <casecore/database.hpp>

#include <span>
#include <string>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// One schema step.
struct migration {
  std::string component;      ///< owner, e.g. "casecore" or "myapp"
  int version = 0;            ///< 1, 2, 3 ... within the component
  std::string name;           ///< short description
  std::string sql;            ///< script for both dialects (tokens expanded)
  std::string sqlite_sql;     ///< optional SQLite-only replacement of `sql`
  std::string postgres_sql;   ///< optional PostgreSQL-only replacement of `sql`
};

/// What a migrate() call did.
struct migration_report {
  std::vector<std::string> applied; ///< "component:version name" of each step applied now
};

/// Every migration casecore's own features need (outbox, counters, files, leases, jobs ...).
std::vector<migration> casecore_migrations();

/// Apply casecore's migrations, then `extra` (the host's), in order; safe to run concurrently.
migration_report migrate(database& db, std::span<const migration> extra = {});

/// The highest applied version of `component` (0 when none).
int schema_version(database& db, std::string_view component);

/// Expand the dialect tokens of a migration script with the transaction's dialect: `{{id}}` (a
/// 64-bit auto-assigned primary key), `{{blob}}` (binary data), `{{now_us}}` (the database clock in
/// µs since the epoch, as an expression). migrate() checksums the expanded text.
std::string render_sql(const transaction& tx, std::string_view sql);

} // namespace casecore

CASECORE_API_END
