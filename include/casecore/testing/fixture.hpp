// casecore/testing/fixture.hpp — throwaway databases for tests (casecore's and downstream ones).
//
// scratch_database gives each test its own empty database on the chosen backend:
//   * SQLite: a new file in a new temporary folder, removed afterwards;
//   * PostgreSQL: a new schema in the server named by CASECORE_TEST_PG_URL (the URL's `schema=` pins
//     search_path to it in every transaction — which also works through a transaction pooler — so
//     child processes opening url() see the same tables), dropped afterwards.
// CASECORE_TEST_SQLITE_PARAMS adds URL parameters to every SQLite fixture (e.g. synchronous=normal).
// The backend comes from CASECORE_TEST_BACKEND (sqlite | postgres, default sqlite). A PostgreSQL
// fixture without a reachable server throws backend_unavailable: tests fail, they never skip.
#pragma once

#include <casecore/database.hpp>
#include <casecore/migration.hpp>

#include <filesystem>
#include <span>
#include <string>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::testing {

/// Which backend the fixtures use.
enum class backend_kind { sqlite, postgres };

/// CASECORE_TEST_BACKEND, or sqlite.
backend_kind selected_backend();

/// "sqlite" or "postgres".
const char* name(backend_kind kind) noexcept;

/// A fresh, empty database that is deleted when this object dies.
class scratch_database {
public:
  /// Create one on `kind` (default: selected_backend()).
  explicit scratch_database(backend_kind kind = selected_backend(), std::string url_params = {});
  ~scratch_database();
  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  /// The URL other handles and child processes can open.
  const std::string& url() const noexcept { return url_; }
  /// Open a new handle on it (its own pool).
  database open(database_options options = {}) const;
  /// Open a new handle and apply casecore's migrations, then `extra` (the host's own), as a
  /// deployment's start-up does.
  database open_migrated(database_options options = {}, std::span<const migration> extra = {}) const;
  /// The backend.
  backend_kind kind() const noexcept { return kind_; }
  /// A folder private to this fixture (for blob stores, staging areas...).
  const std::filesystem::path& folder() const noexcept { return folder_; }

private:
  backend_kind kind_;
  std::filesystem::path folder_;
  std::string schema_;
  std::string admin_url_;
  std::string url_;
};

/// The temporary folder tests use (TMPDIR or /tmp).
std::filesystem::path temp_root();

/// True when CASECORE_TEST_PG_POOLER names a pooler (transaction | session) between the tests and
/// PostgreSQL: tests that need a direct session (startup options, killing a server backend by pid,
/// holding more connections than the pooler has) skip themselves and say why.
bool behind_test_pooler();

} // namespace casecore::testing

CASECORE_API_END
