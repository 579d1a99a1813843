// File registration next to the raw INSERT ... ON CONFLICT it wraps, and streamed SHA-256 next to
// sha256sum on the same file.
//
// "register_staged new/duplicate": the registry's own cost — content staged once, then every call
// registers it in its own transaction (a new name each call, or the same name), next to the raw
// INSERT ... ON CONFLICT DO NOTHING RETURNING id (+ the SELECT of the existing row when the insert
// returns nothing) with the same values. "register_stream": the whole upload of 4 KiB (hashing,
// memory blob store, row) next to raw code that hashes the same bytes, copies them and runs the
// statements.
#include "harness.hpp"

#include <casecore/detail/token.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#ifdef CASECORE_WITH_POSTGRES
#include <pqxx/pqxx>
#endif

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace fs = std::filesystem;
using namespace casecore;

namespace {

constexpr const char* raw_table =
    "CREATE TABLE raw_files(id {{id}}, case_id TEXT NOT NULL, sha256 TEXT NOT NULL, original_name TEXT NOT NULL,"
    " size BIGINT NOT NULL, blob_key TEXT NOT NULL, registered_by TEXT NOT NULL, registered_at BIGINT NOT NULL,"
    " UNIQUE(case_id, sha256, original_name))";
constexpr const char* raw_insert =
    "INSERT INTO raw_files(case_id, sha256, original_name, size, blob_key, registered_by, registered_at) "
    "VALUES($1, $2, $3, 4096, $2, 'bench', 0) ON CONFLICT (case_id, sha256, original_name) DO NOTHING RETURNING id";
constexpr const char* raw_select = "SELECT id FROM raw_files WHERE case_id = $1 AND sha256 = $2 AND original_name = $3";

std::string sqlite_sql(std::string s) {
  for (auto p = s.find('$'); p != std::string::npos; p = s.find('$', p)) s[p] = '?';
  return s;
}

// One raw connection per caller, as a hand-written application would have.
struct raw_caller {
  virtual ~raw_caller() = default;
  virtual void insert_or_select(const std::string& case_id, const std::string& sha, const std::string& name) = 0;
};

struct raw_sqlite final : raw_caller {
  SQLite::Database db;
  SQLite::Statement ins, sel;
  explicit raw_sqlite(const std::string& path)
      : db(path, SQLite::OPEN_READWRITE), ins(configured(db), sqlite_sql(raw_insert)), sel(db, sqlite_sql(raw_select)) {}
  // The same settings casecore gives its connections (WAL is persistent, set by casecore already).
  static SQLite::Database& configured(SQLite::Database& d) {
    d.setBusyTimeout(30000);
    d.exec("PRAGMA synchronous=NORMAL");
    return d;
  }
  void insert_or_select(const std::string& case_id, const std::string& sha, const std::string& name) override {
    db.exec("BEGIN IMMEDIATE");
    ins.bind(1, case_id);
    ins.bind(2, sha);
    ins.bind(3, name);
    const bool got = ins.executeStep();
    ins.reset();
    if (!got) {
      sel.bind(1, case_id);
      sel.bind(2, sha);
      sel.bind(3, name);
      sel.executeStep();
      sel.reset();
    }
    db.exec("COMMIT");
  }
};

#ifdef CASECORE_WITH_POSTGRES
struct raw_pg final : raw_caller {
  pqxx::connection c;
  explicit raw_pg(const std::string& url) : c(url) {}
  void insert_or_select(const std::string& case_id, const std::string& sha, const std::string& name) override {
    pqxx::work w(c);
    auto r = w.exec_params(raw_insert, case_id, sha, name);
    if (r.empty()) w.exec_params(raw_select, case_id, sha, name);
    w.commit();
  }
};
#endif

std::string content(int thread, std::uint64_t i) {
  std::string s(4096, 'x');
  const auto tag = std::to_string(thread) + ":" + std::to_string(i) + ":";
  s.replace(0, tag.size(), tag);
  return s;
}

void run_backend(const std::string& backend, const std::string& url, const std::function<std::unique_ptr<raw_caller>()>& make_raw) {
  // One pooled connection per caller, like the raw side (the default pool of 8 + 4 overflow would
  // open and close overflow connections all the time under 32 callers).
  auto db = casecore::open(url + (url.find('?') == std::string::npos ? "?" : "&") + "pool_size=33");
  migrate(db);
  db.write([&](transaction& tx) { tx.exec_script(render_sql(tx, raw_table)); });
  auto store = make_memory_blob_store();
  file_registry reg(db, *store);
  const auto ms = bench::duration();
  for (int callers : {1, 8, 32}) {
    std::vector<std::unique_ptr<raw_caller>> raws;
    for (int t = 0; t < callers; ++t) raws.push_back(make_raw());
    static std::atomic<std::uint64_t> seq{0};
    // Registration proper: the content is staged once, every call registers it in its own
    // transaction — under a new name ("new": a new row) or the same name ("duplicate"). The raw side
    // runs the same statements with the same values.
    const auto staged = [&] {
      std::istringstream in(content(-2, 0));
      return reg.stage(in);
    }();
    write_options wo;
    wo.actor = "bench";
    const double lib_new = bench::measure(callers, ms, [&](int) {
      const auto name = "f" + std::to_string(seq++);
      db.write([&](transaction& tx) { reg.register_staged(tx, "case-staged", staged, name); }, wo);
      return std::uint64_t{1};
    });
    const double raw_new = bench::measure(callers, ms, [&](int t) {
      raws[static_cast<std::size_t>(t)]->insert_or_select("case-staged", staged.sha256(), "f" + std::to_string(seq++));
      return std::uint64_t{1};
    });
    bench::row("register_staged new", backend, callers, lib_new, raw_new);
    const double lib_sdup = bench::measure(callers, ms, [&](int) {
      db.write([&](transaction& tx) { reg.register_staged(tx, "case-staged", staged, "same.bin"); }, wo);
      return std::uint64_t{1};
    });
    const double raw_sdup = bench::measure(callers, ms, [&](int t) {
      raws[static_cast<std::size_t>(t)]->insert_or_select("case-staged", staged.sha256(), "same.bin");
      return std::uint64_t{1};
    });
    bench::row("register_staged duplicate", backend, callers, lib_sdup, raw_sdup);

    // The whole upload: casecore streams 4 KiB through SHA-256 into the memory blob store, then
    // registers; the raw side hashes the same bytes, copies them into a buffer (its "blob store")
    // and runs the statements.
    const double lib_stream = bench::measure(callers, ms, [&](int t) {
      std::istringstream in(content(t, seq++));
      reg.register_stream("case-new", in, "file.bin", "bench");
      return std::uint64_t{1};
    });
    const double raw_stream = bench::measure(callers, ms, [&](int t) {
      const auto bytes = content(t, seq++);
      thread_local std::string blob_copy;
      blob_copy.assign(bytes);
      raws[static_cast<std::size_t>(t)]->insert_or_select("case-new", sha256_hex(bytes), "file.bin");
      return std::uint64_t{1};
    });
    bench::row("register_stream new 4 KiB (hash + blob + row)", backend, callers, lib_stream, raw_stream);
    const std::string dup = content(-1, 0);
    const double lib_dup = bench::measure(callers, ms, [&](int) {
      std::istringstream in(dup);
      reg.register_stream("case-dup", in, "same.bin", "bench");
      return std::uint64_t{1};
    });
    const double raw_dup = bench::measure(callers, ms, [&](int t) {
      thread_local std::string blob_copy;
      blob_copy.assign(dup);
      raws[static_cast<std::size_t>(t)]->insert_or_select("case-dup", sha256_hex(dup), "same.bin");
      return std::uint64_t{1};
    });
    bench::row("register_stream duplicate 4 KiB", backend, callers, lib_dup, raw_dup);
  }
}

void hash_throughput() {
  const auto path = fs::temp_directory_path() / ("casecore-bench-hash-" + detail::random_token().substr(0, 8));
  const std::size_t mib = 256;
  {
    std::ofstream out(path, std::ios::binary);
    std::string chunk(1 << 20, '\0');
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 2654435761u >> 13);
    for (std::size_t i = 0; i < mib; ++i) out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  auto timed = [](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::string ours;
  sha256_file_hex(path); // warm the page cache for both contenders
  const double lib_s = timed([&] { ours = sha256_file_hex(path); });
  const std::string cmd = "sha256sum '" + path.string() + "' > '" + path.string() + ".out'";
  const double tool_s = timed([&] { (void)std::system(cmd.c_str()); });
  std::string theirs;
  std::ifstream(path.string() + ".out") >> theirs;
  std::printf("\n| hashing %zu MiB | casecore sha256_file_hex | sha256sum | ratio | digests equal |\n|---|---:|---:|---:|---|\n", mib);
  std::printf("| MiB/s | %.0f | %.0f | %.2f | %s |\n", static_cast<double>(mib) / lib_s, static_cast<double>(mib) / tool_s,
              tool_s / lib_s, ours == theirs ? "yes" : "NO");
  fs::remove(path);
  fs::remove(path.string() + ".out");
}

} // namespace

int main() {
  bench::header();
  const auto dir = fs::temp_directory_path() / ("casecore-bench-files-" + detail::random_token().substr(0, 8));
  fs::create_directories(dir);
  const auto file = (dir / "bench.db").string();
  run_backend("sqlite", "sqlite://" + file, [&] { return std::make_unique<raw_sqlite>(file); });
#ifdef CASECORE_WITH_POSTGRES
  if (const auto pg = bench::pg_url(); !pg.empty()) {
    const auto schema = "bench_files_" + detail::random_token().substr(0, 8);
    { pqxx::connection admin(pg); pqxx::work w(admin); w.exec("CREATE SCHEMA " + schema); w.commit(); }
    const auto url = pg + (pg.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
    run_backend("postgres", url, [&] { return std::make_unique<raw_pg>(url); });
    pqxx::connection admin(pg);
    pqxx::work w(admin);
    w.exec("DROP SCHEMA " + schema + " CASCADE");
    w.commit();
  }
#endif
  fs::remove_all(dir);
  hash_throughput();
}
