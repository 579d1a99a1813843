#include <casecore/detail/backend.hpp>
#include <casecore/sqlite/sqlite.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_map>

namespace casecore::sqlite {

namespace {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

[[noreturn]] void translate(const std::exception& e) {
  if (auto* se = dynamic_cast<const SQLite::Exception*>(&e)) {
    const int code = se->getExtendedErrorCode() >= 0 ? se->getExtendedErrorCode() : SQLITE_ERROR;
    raise(map_error(code), std::string("sqlite: ") + se->what(), std::to_string(code));
  }
  raise(errc::backend_error, std::string("sqlite: ") + e.what());
}

bool poisons_connection(errc code, int raw) {
  const int primary = raw & 0xff;
  return code == errc::backend_unavailable || primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOMEM;
}

// casecore_now_us(), the database clock on SQLite: the host kernel's CLOCK_REALTIME, read with a
// direct system call. WAL needs every process that opens the file on this one host, so the kernel
// clock is the clock they all share; libc's clock_gettime can be overridden per process
// (LD_PRELOAD libfaketime, a test double), and lease / job expiry must not follow such an override.
void now_us_function(sqlite3_context* ctx, int, sqlite3_value**) {
  timespec ts{};
  if (::syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts) == 0) {
    sqlite3_result_int64(ctx, static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000);
    return;
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  sqlite3_result_int64(ctx, std::chrono::duration_cast<std::chrono::microseconds>(now).count());
}

const char* pragma_value(synchronous s) {
  switch (s) {
    case synchronous::off: return "OFF";
    case synchronous::normal: return "NORMAL";
    case synchronous::full: return "FULL";
    case synchronous::extra: return "EXTRA";
  }
  return "FULL";
}

// A plain file path (not ":memory:", not a "file:" URI, which SQLite parses itself).
bool is_plain_file(const std::string& path) { return path != ":memory:" && !path.starts_with("file:") && !path.empty(); }

// Before SQLite creates a database it is created here, empty and 0600: SQLite would use 0644 (less
// the umask), and its -wal / -shm files copy the database file's mode. O_EXCL: an existing file,
// or one another process creates at the same moment, is left exactly as it is.
void create_private_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  if (errno == EEXIST) return;
  raise(errc::configuration, "cannot create SQLite database '" + path + "': " + std::strerror(errno));
}

int open_flags(const std::string& path, const options& o) {
  const bool memory = path == ":memory:";
  if (o.read_only && !memory) return SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX | SQLite::OPEN_URI;
  return SQLite::OPEN_READWRITE | (o.create || memory ? SQLite::OPEN_CREATE : 0) | SQLite::OPEN_NOMUTEX | SQLite::OPEN_URI;
}

const std::string& prepared_path(const std::string& path, const options& o) {
  if (!is_plain_file(path)) return path;
  if (o.create && !o.read_only) create_private_file(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      raise(errc::not_found, "no SQLite database at '" + path + "' (only `casecore migrate` / a writable open creates one)");
    return path; // let SQLite report it
  }
  // SQLite opens without O_NONBLOCK: a FIFO named as the database would block the open for good.
  if (!S_ISREG(st.st_mode)) raise(errc::configuration, "SQLite database '" + path + "' is not a regular file");
  return path;
}

// The dialect's fragments (detail/backend.hpp). No row locks: a write transaction (BEGIN IMMEDIATE)
// already excludes every other writer, so FOR UPDATE has nothing to add (and is not SQL here).
constexpr sql_fragments fragments{
    .for_update = "",
    .for_no_key_update = "",
    .for_key_share = "",
    .for_update_skip_locked = "",
    .now_us = "casecore_now_us()",
    .transaction_lock = "",
    .table_exists = "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = $1",
    .tables_like = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE $1 ESCAPE '\\' ORDER BY name",
    .id_column = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .blob_type = "BLOB",
};

class sqlite_connection final : public detail::connection {
public:
  sqlite_connection(const std::string& path, const options& o)
      : db_(prepared_path(path, o), open_flags(path, o), static_cast<int>(o.busy_timeout.count())),
        busy_timeout_(o.busy_timeout), current_busy_(o.busy_timeout) {
    // The journal mode is a property of the database file, not of the connection: only a writable
    // open switches it, never a read-only look (`casecore status`).
    if (!o.read_only) db_.exec("PRAGMA journal_mode=WAL");
    db_.exec(std::string("PRAGMA synchronous=") + pragma_value(o.sync));
    db_.exec("PRAGMA foreign_keys=ON");
    sqlite3_create_function_v2(db_.getHandle(), "casecore_now_us", 0, SQLITE_UTF8, nullptr, now_us_function,
                               nullptr, nullptr, nullptr);
  }

  result exec(std::string_view sql, std::span<const value> params) override {
    try {
      auto& stmt = prepared(sql);
      bind(stmt, params);
      const auto before = sqlite3_total_changes(db_.getHandle());
      std::vector<value> cells;
      std::size_t cols = 0;
      while (stmt.executeStep()) {
        cols = static_cast<std::size_t>(stmt.getColumnCount());
        for (int c = 0; c < static_cast<int>(cols); ++c) cells.push_back(read_column(stmt.getColumn(c)));
      }
      const auto affected = sqlite3_total_changes(db_.getHandle()) - before;
      stmt.reset();
      return result(cols, std::move(cells), affected);
    } catch (const casecore::error&) {
      throw;
    } catch (const SQLite::Exception& e) {
      reset_quietly(sql);
      fail(e);
    } catch (const std::exception& e) {
      reset_quietly(sql);
      translate(e);
    }
  }

  void exec_script(std::string_view sql) override {
    try {
      db_.exec(std::string(sql));
    } catch (const SQLite::Exception& e) {
      fail(e);
    }
  }

  void begin(const detail::tx_settings& s) override {
    // Read transactions refuse writes, as PostgreSQL's READ ONLY does. query_only is sticky and only
    // flipped when the mode changes, so a run of reads (or writes) pays nothing for it.
    const bool want_read_only = s.mode == detail::tx_mode::read;
    if (want_read_only != read_only_) {
      control(want_read_only ? "PRAGMA query_only=ON" : "PRAGMA query_only=OFF");
      read_only_ = want_read_only;
    }
    // A lock timeout bounds the wait for the write lock (the only lock SQLite waits for), for this
    // transaction only; the connection's own busy timeout is restored for the next one.
    const auto wait = s.lock_timeout.count() > 0 ? s.lock_timeout : busy_timeout_;
    if (wait != current_busy_) {
      sqlite3_busy_timeout(db_.getHandle(), static_cast<int>(std::min<std::int64_t>(wait.count(), INT32_MAX)));
      current_busy_ = wait;
    }
    control(want_read_only ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE");
  }

  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  const sql_fragments& sql() const noexcept override { return fragments; }

  void commit() override {
    // SQLITE_BUSY at COMMIT leaves the transaction open and uncommitted: a known outcome, so the
    // run loop rolls back and may retry.
    control("COMMIT");
  }

  void rollback() noexcept override {
    if (sqlite3_get_autocommit(db_.getHandle())) return; // SQLite already rolled back (or never began)
    try {
      control("ROLLBACK");
    } catch (...) {
      broken_ = true;
    }
  }

  bool ping() noexcept override {
    try {
      db_.exec("SELECT 1");
      return true;
    } catch (...) {
      broken_ = true;
      return false;
    }
  }

  bool broken() const noexcept override { return broken_; }

private:
  // Transaction-control statements run through the statement cache: no re-parse per transaction.
  void control(const char* sql) {
    try {
      auto& stmt = prepared(sql);
      stmt.exec();
      stmt.reset();
    } catch (const SQLite::Exception& e) {
      reset_quietly(sql);
      fail(e);
    }
  }

  SQLite::Statement& prepared(std::string_view sql) {
    if (auto it = cache_.find(sql); it != cache_.end()) return *it->second;
    auto stmt = std::make_unique<SQLite::Statement>(db_, translate_placeholders(sql));
    auto& ref = *stmt;
    cache_.emplace(std::string(sql), std::move(stmt));
    return ref;
  }

  static void bind(SQLite::Statement& stmt, std::span<const value> params) {
    stmt.clearBindings();
    int i = 1;
    for (const auto& p : params) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, null_t>) stmt.bind(i);
            else if constexpr (std::is_same_v<T, std::int64_t>) stmt.bind(i, static_cast<int64_t>(v));
            else if constexpr (std::is_same_v<T, double>) stmt.bind(i, v);
            else if constexpr (std::is_same_v<T, std::string>) stmt.bindNoCopy(i, v);
            else stmt.bindNoCopy(i, static_cast<const void*>(v.bytes.data()), static_cast<int>(v.bytes.size()));
          },
          p);
      ++i;
    }
  }

  static value read_column(const SQLite::Column& col) {
    switch (col.getType()) {
      case SQLITE_INTEGER: return std::int64_t{col.getInt64()};
      case SQLITE_FLOAT: return col.getDouble();
      case SQLITE_TEXT: return std::string(col.getText(), static_cast<std::size_t>(col.getBytes()));
      case SQLITE_BLOB: {
        blob b;
        const auto* p = static_cast<const std::byte*>(col.getBlob());
        b.bytes.assign(p, p + col.getBytes());
        return b;
      }
      default: return null;
    }
  }

  void reset_quietly(std::string_view sql) noexcept {
    if (auto it = cache_.find(sql); it != cache_.end()) {
      try {
        it->second->reset();
      } catch (...) {
      }
    }
  }

  [[noreturn]] void fail(const SQLite::Exception& e) {
    const int raw = e.getExtendedErrorCode() >= 0 ? e.getExtendedErrorCode() : SQLITE_ERROR;
    const errc code = map_error(raw);
    if (poisons_connection(code, raw)) broken_ = true;
    raise(code, std::string("sqlite: ") + e.what(), std::to_string(raw));
  }

  SQLite::Database db_;
  std::unordered_map<std::string, std::unique_ptr<SQLite::Statement>, string_hash, std::equal_to<>> cache_;
  std::chrono::milliseconds busy_timeout_;
  std::chrono::milliseconds current_busy_;
  bool broken_ = false;
  bool read_only_ = false;
};

class sqlite_backend final : public detail::backend {
public:
  sqlite_backend(std::string path, options o, std::string masked)
      : path_(std::move(path)), options_(o), masked_(std::move(masked)) {}
  std::unique_ptr<detail::connection> connect() override {
    try {
      return std::make_unique<sqlite_connection>(path_, options_);
    } catch (const SQLite::Exception& e) {
      const int raw = e.getExtendedErrorCode() >= 0 ? e.getExtendedErrorCode() : SQLITE_CANTOPEN;
      const errc code = map_error(raw);
      // A file that cannot be opened is not coming back by waiting: no reconnect budget for it.
      raise(code == errc::busy ? errc::busy : errc::configuration,
            "cannot open SQLite database '" + path_ + "': " + e.what(), std::to_string(raw));
    }
  }
  casecore::dialect dialect() const noexcept override { return casecore::dialect::sqlite; }
  std::string describe() const override { return masked_; }

private:
  std::string path_;
  options options_;
  std::string masked_;
};


} // namespace

std::shared_ptr<detail::backend> make_backend(const database_url& url, database_options& db_options, options sqlite_options) {
  if (url.scheme != "sqlite") raise(errc::bad_url, "not an sqlite URL: " + url.masked);
  sqlite_options.busy_timeout = std::chrono::milliseconds(url_param(url, "busy_timeout_ms", sqlite_options.busy_timeout.count()));
  if (auto it = url.casecore.find("synchronous"); it != url.casecore.end()) {
    // Any letter case, as parse_url validates it (it once accepted "Full" here only as "full" / "FULL").
    std::string s = it->second;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (s == "off") sqlite_options.sync = synchronous::off;
    else if (s == "normal") sqlite_options.sync = synchronous::normal;
    else if (s == "full") sqlite_options.sync = synchronous::full;
    else if (s == "extra") sqlite_options.sync = synchronous::extra;
    else raise(errc::bad_url, "synchronous must be off, normal, full or extra, got '" + it->second + "'");
  }
  apply_pool_params(url, db_options.pool);
  if (url.target == ":memory:") { // one connection is the whole database
    db_options.pool.size = 1;
    db_options.pool.overflow = 0;
    db_options.pool.recycle_age = std::chrono::hours(24 * 365 * 100);
  }
  return std::make_shared<sqlite_backend>(url.target, sqlite_options, url.masked);
}

database open(const database_url& url, database_options db_options, options sqlite_options) {
  auto backend = make_backend(url, db_options, sqlite_options);
  database db(std::move(backend), std::move(db_options));
  write_options probe;
  probe.reconnect_budget = std::chrono::milliseconds(0);
  db.read([](transaction&) {}, probe); // open the first connection now: a bad path fails here
  return db;
}

} // namespace casecore::sqlite
