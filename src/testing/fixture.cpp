#include <casecore/detail/token.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>

#include <cstdlib>
#include <mutex>
#include <optional>

namespace casecore::testing {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// One admin handle per process for creating and dropping schemas.
database& pg_admin(const std::string& url) {
  static std::mutex m;
  static std::optional<database> admin;
  std::lock_guard g(m);
  if (!admin) {
    database_options o;
    o.pool.size = 1;
    o.pool.overflow = 1;
    admin.emplace(casecore::open(url, o));
  }
  return *admin;
}

} // namespace

backend_kind selected_backend() {
  const auto v = env("CASECORE_TEST_BACKEND");
  if (v.empty() || v == "sqlite") return backend_kind::sqlite;
  if (v == "postgres" || v == "postgresql") return backend_kind::postgres;
  raise(errc::invalid_argument, "CASECORE_TEST_BACKEND must be sqlite or postgres, got '" + v + "'");
}

const char* name(backend_kind kind) noexcept { return kind == backend_kind::sqlite ? "sqlite" : "postgres"; }

std::filesystem::path temp_root() {
  const auto t = env("TMPDIR");
  return t.empty() ? std::filesystem::path("/tmp") : std::filesystem::path(t);
}

scratch_database::scratch_database(backend_kind kind, std::string url_params) : kind_(kind) {
  const auto token = detail::random_token().substr(0, 16);
  folder_ = temp_root() / ("casecore-test-" + token);
  std::filesystem::create_directories(folder_);
  if (kind == backend_kind::sqlite) {
    // CASECORE_TEST_SQLITE_PARAMS (e.g. synchronous=normal) reruns a suite under other settings
    // (scripts/test-matrix.sh); the test's own parameters come last, so they win.
    auto params = env("CASECORE_TEST_SQLITE_PARAMS");
    if (!url_params.empty()) params += (params.empty() ? "" : "&") + url_params;
    url_ = "sqlite://" + (folder_ / "test.db").string() + (params.empty() ? "" : "?" + params);
    return;
  }
  admin_url_ = env("CASECORE_TEST_PG_URL");
  if (admin_url_.empty())
    raise(errc::backend_unavailable, "CASECORE_TEST_PG_URL is not set: start a server with scripts/pg-cluster.sh "
                                     "or run the suite through scripts/test.sh");
  schema_ = "t_" + token;
  pg_admin(admin_url_).write([&](transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema_); });
  url_ = admin_url_ + (admin_url_.find('?') == std::string::npos ? "?" : "&") + "schema=" + schema_ +
         (url_params.empty() ? "" : "&" + url_params);
}

scratch_database::~scratch_database() {
  try {
    if (!schema_.empty()) pg_admin(admin_url_).write([&](transaction& tx) { tx.exec_script("DROP SCHEMA " + schema_ + " CASCADE"); });
  } catch (...) { // a leftover schema in a throwaway cluster is harmless
  }
  std::error_code ec;
  std::filesystem::remove_all(folder_, ec);
}

bool behind_test_pooler() {
  const auto v = env("CASECORE_TEST_PG_POOLER");
  return !v.empty() && v != "none";
}

database scratch_database::open(database_options options) const { return casecore::open(url_, std::move(options)); }

database scratch_database::open_migrated(database_options options, std::span<const migration> extra) const {
  auto db = open(std::move(options));
  migrate(db, extra);
  return db;
}

} // namespace casecore::testing
