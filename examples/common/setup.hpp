// examples/common/setup.hpp — where an example runs (database, scratch folder) and how it reports.
//
// environment: a private scratch folder (blob stores, generated evidence, the search index file) and
// the database. Without --db the database is an embedded SQLite file in that folder. With --fresh,
// a PostgreSQL run happens in a new schema created for it (dropped at exit unless --keep), and a
// SQLite file named by --db is deleted first. Every example refuses to run on a database that still
// holds a previous run's rows, because its invariant report counts rows.
//
// invariant_report: named checks printed as a table; exit_code() is 1 when any check failed.
#pragma once

#include <casecore/open.hpp>
#include <casecore/url.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace example {

/// Random lowercase hex digits (names of schemas, nonces of file contents).
inline std::string random_hex(std::size_t digits) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(digits, '0');
  for (auto& c : s) c = hex[rng() % 16];
  return s;
}

/// Microseconds on the local steady clock (interval checks inside one process).
inline std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The scratch folder and database of one example run.
class environment {
public:
  /// `name` names the folder and schema; `url` empty = embedded SQLite in the scratch folder.
  environment(const std::string& name, std::string url, bool fresh, bool keep)
      : keep_(keep), dir_(make_dir(name)), url_(prepare(name, std::move(url), fresh)), db_(casecore::open(url_)) {}
  ~environment() {
    if (keep_) {
      std::printf("kept: scratch folder %s%s%s\n", dir_.c_str(), schema_.empty() ? "" : ", schema ", schema_.c_str());
      return;
    }
    if (!schema_.empty()) {
      try {
        casecore::open(admin_url_).write([&](casecore::transaction& tx) { tx.exec_script("DROP SCHEMA " + schema_ + " CASCADE"); });
      } catch (const casecore::error& e) {
        std::fprintf(stderr, "warning: could not drop schema %s: %s\n", schema_.c_str(), e.what());
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  environment(const environment&) = delete;
  environment& operator=(const environment&) = delete;

  /// The database handle.
  casecore::database& db() noexcept { return db_; }
  /// The URL opened (with the private schema's search_path on PostgreSQL --fresh).
  const std::string& url() const noexcept { return url_; }
  /// The private scratch folder.
  const std::filesystem::path& dir() const noexcept { return dir_; }

private:
  static std::filesystem::path make_dir(const std::string& name) {
    auto d = std::filesystem::temp_directory_path() / ("casecore-" + name + "-" + random_hex(8));
    std::filesystem::create_directories(d);
    return d;
  }
  std::string prepare(const std::string& name, std::string url, bool fresh) {
    if (url.empty()) return "sqlite:" + (dir_ / (name + ".db")).string();
    const auto parsed = casecore::parse_url(url);
    if (!fresh) return url;
    if (parsed.scheme == "sqlite") {
      if (parsed.target != ":memory:")
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(parsed.target + suffix);
      return url;
    }
    // A new schema in the named database; its name is generated, never taken from input.
    admin_url_ = url;
    schema_ = "ex_" + name + "_" + random_hex(10);
    casecore::open(admin_url_).write([&](casecore::transaction& tx) { tx.exec_script("CREATE SCHEMA " + schema_); });
    return url + (url.find('?') == std::string::npos ? "?" : "&") + "schema=" + schema_;
  }

  bool keep_;
  std::filesystem::path dir_;
  std::string admin_url_, schema_;
  std::string url_;
  casecore::database db_;
};

/// The invariant report printed at the end of every example.
class invariant_report {
public:
  /// Record one invariant: `ok` and the figures that show it.
  void check(const std::string& name, bool ok, const std::string& detail) {
    rows_.push_back({name, ok, detail});
    failed_ += ok ? 0 : 1;
  }
  /// Print the table.
  void print() const {
    std::printf("\ninvariant report\n");
    for (const auto& r : rows_) std::printf("  [%s] %-56s %s\n", r.ok ? " OK " : "FAIL", r.name.c_str(), r.detail.c_str());
    std::printf("%s: %zu of %zu invariants hold\n", failed_ ? "BROKEN" : "ALL OK", rows_.size() - failed_, rows_.size());
  }
  /// 0 when every invariant holds, 1 otherwise.
  int exit_code() const noexcept { return failed_ ? 1 : 0; }

private:
  struct row {
    std::string name;
    bool ok;
    std::string detail;
  };
  std::vector<row> rows_;
  std::size_t failed_ = 0;
};

/// "a == b" style detail text.
inline std::string eq(long long a, long long b) { return std::to_string(a) + (a == b ? " == " : " != ") + std::to_string(b); }

/// Count rows of a query (first column of the first row as an integer).
inline std::int64_t scalar(casecore::database& db, const std::string& sql) {
  return db.read([&](casecore::transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

} // namespace example
