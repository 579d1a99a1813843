#include "conninfo.hpp"

#include <casecore/detail/backend.hpp>
#include <casecore/postgres/postgres.hpp>

#include <openssl/sha.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <optional>
#include <mutex>
#include <poll.h>
#include <unordered_map>

namespace casecore::postgres {

namespace {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// PostgreSQL type OIDs we decode natively; everything else arrives as text.
constexpr pqxx::oid oid_bool = 16, oid_bytea = 17, oid_int8 = 20, oid_int2 = 21, oid_int4 = 23, oid_float4 = 700,
                    oid_float8 = 701;

std::string to_text(const value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, null_t>) return {};
        else if constexpr (std::is_same_v<T, std::int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) {
          char buf[64];
          auto [p, ec] = std::to_chars(buf, buf + sizeof buf, x);
          return std::string(buf, p);
        } else if constexpr (std::is_same_v<T, std::string>) return x;
        else {
          static constexpr char hex[] = "0123456789abcdef";
          std::string out = "\\x";
          out.reserve(2 + x.bytes.size() * 2);
          for (auto b : x.bytes) {
            out.push_back(hex[std::to_integer<unsigned>(b) >> 4]);
            out.push_back(hex[std::to_integer<unsigned>(b) & 15]);
          }
          return out;
        }
      },
      v);
}

// Both output formats a server may be configured with (bytea_output, per server, database or role):
// hex ("\\x0aff", the default) and escape (printable bytes as they are, "\\\\" and "\\ooo" octal).
// Reading only hex once returned every blob empty on an escape-format server.
blob from_bytea(std::string_view text) {
  blob b;
  if (text.starts_with("\\x")) {
    auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    b.bytes.reserve((text.size() - 2) / 2);
    for (std::size_t i = 2; i + 1 < text.size(); i += 2)
      b.bytes.push_back(static_cast<std::byte>(nibble(text[i]) * 16 + nibble(text[i + 1])));
    return b;
  }
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  b.bytes.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] != '\\') {
      b.bytes.push_back(static_cast<std::byte>(text[i++]));
    } else if (i + 1 < text.size() && text[i + 1] == '\\') {
      b.bytes.push_back(std::byte{'\\'});
      i += 2;
    } else if (i + 3 < text.size() && octal(text[i + 1]) && octal(text[i + 2]) && octal(text[i + 3])) {
      b.bytes.push_back(static_cast<std::byte>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0')));
      i += 4;
    } else {
      raise(errc::backend_error, "postgresql: malformed bytea value in escape format");
    }
  }
  return b;
}

value read_field(const pqxx::field& f, pqxx::oid type) {
  if (f.is_null()) return null;
  const std::string_view text(f.c_str(), f.size());
  switch (type) {
    case oid_int8: case oid_int2: case oid_int4: return detail::parse_int(text);
    case oid_bool: return std::int64_t{text == "t" ? 1 : 0};
    case oid_float4: case oid_float8: return detail::parse_double(text);
    case oid_bytea: return from_bytea(text);
    default: return std::string(text);
  }
}

// The prepared-statement name of a SQL text: a hash of the text itself. Two clients that share a
// server connection through a pooler can then never bind one statement's parameters to another's
// text: equal names mean equal texts.
std::string statement_name(std::string_view sql) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(sql.data()), sql.size(), md);
  static constexpr char hex[] = "0123456789abcdef";
  std::string name = "casecore_";
  for (int i = 0; i < 16; ++i) {
    name += hex[md[i] >> 4];
    name += hex[md[i] & 15];
  }
  return name;
}

// Everything one backend's connections share.
struct pg_shared {
  std::string conninfo;                 // libpq keyword/value parameters (holds the password)
  std::string masked;                   // printable URL
  std::string password;                 // scrubbed from every message
  pooler_mode pooler = pooler_mode::auto_detect;
  bool primary = true;                  // this backend's connections must be able to write
  std::chrono::milliseconds statement_timeout{0}, lock_timeout{0};
  std::string schema;                   // ?schema=, when given
  std::mutex path_m;                    // guards the one write of pinned_path
  std::string pinned_path;              // the search_path every transaction pins (written once)
  std::atomic<bool> path_ready{false};
  std::atomic<bool> unnamed{false};     // use unnamed statements (a transaction pooler is in between)
  std::atomic<bool> pooler_seen{false}; // a pooler was detected (or declared)
  bool track_commits = false;           // primaries with replicas report commit positions (LSNs)

  std::string scrub(std::string msg) const {
    msg = mask_secrets(msg);
    if (password.size() >= 3)
      for (auto p = msg.find(password); p != std::string::npos; p = msg.find(password, p)) msg.replace(p, password.size(), "***");
    return msg;
  }
};


// "16/B374D848" → 0x16B374D848
std::uint64_t parse_lsn(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return 0;
  std::uint64_t hi = 0, lo = 0;
  std::from_chars(text.data(), text.data() + slash, hi, 16);
  std::from_chars(text.data() + slash + 1, text.data() + text.size(), lo, 16);
  return (hi << 32) | lo;
}

// The dialect's fragments (detail/backend.hpp). The clock is written here once: the migration's
// casecore_now_us() function is defined from it.
constexpr sql_fragments fragments{
    .for_update = " FOR UPDATE",
    .for_no_key_update = " FOR NO KEY UPDATE",
    .for_key_share = " FOR KEY SHARE",
    .for_update_skip_locked = " FOR UPDATE SKIP LOCKED",
    .now_us = "(extract(epoch from clock_timestamp()) * 1000000)::bigint",
    .transaction_lock = "SELECT pg_advisory_xact_lock($1)",
    .table_exists = "SELECT to_regclass($1) IS NOT NULL",
    .tables_like = "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() "
                   "AND table_name LIKE $1 ESCAPE '\\' ORDER BY table_name",
    .id_column = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    .blob_type = "BYTEA",
};

class pg_connection final : public detail::connection {
public:
  explicit pg_connection(std::shared_ptr<pg_shared> shared) : shared_(std::move(shared)), conn_(shared_->conninfo) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    conn_.inhibit_reactivation(true); // a silent reconnect mid-transaction would run the rest in autocommit
#pragma GCC diagnostic pop
    work_.emplace(conn_, "casecore");
    probe();
  }
  ~pg_connection() override {
    try {
      work_.reset();
      conn_.disconnect();
    } catch (...) {
    }
  }

private:
  // What this server is: a pooler in between shows up as a backend pid that differs from the one
  // the connection was handed at startup (PgBouncer hands out its own cancel keys); a primary
  // backend must not be in recovery (a standby, or a demoted old primary).
  void probe() {
    const auto r = unnamed_exec("SELECT pg_backend_pid(), pg_is_in_recovery(), current_setting('search_path')", {});
    if (!shared_->path_ready.load(std::memory_order_acquire)) {
      std::lock_guard g(shared_->path_m);
      if (!shared_->path_ready.load(std::memory_order_relaxed)) {
        shared_->pinned_path = pin_search_path(r[0][2].c_str());
        shared_->path_ready.store(true, std::memory_order_release);
      }
    }
    const auto pid = std::stoll(r[0][0].c_str());
    if (pid != conn_.backendpid() && shared_->pooler == pooler_mode::auto_detect) {
      shared_->pooler_seen = true;
      shared_->unnamed = true;
    }
    if (shared_->primary && std::string_view(r[0][1].c_str()) == "t")
      raise(errc::backend_unavailable, "server " + shared_->masked + " is a standby (in recovery): waiting for a primary");
  }

  pqxx::result unnamed_exec(const std::string& sql, const std::vector<const char*>& ptrs) {
    return guarded([&] { return work_->exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs)); });
  }

  template <class F> std::invoke_result_t<F> guarded(F&& f) {
    try {
      return f();
    } catch (...) {
      rethrow_translated(false);
    }
  }

  // The one place pqxx exceptions become casecore errors. Every exception is first reduced to its
  // SQLSTATE, then mapped through the adapter's one table (map_sqlstate). libpqxx 6 throws a few
  // SQLSTATE classes as their own types without the code (transaction_rollback and its children are
  // not sql_errors): those get their standard SQLSTATE back here. During COMMIT a lost connection
  // means the outcome is unknown; before it, the transaction certainly did not commit.
  [[noreturn]] void rethrow_translated(bool at_commit) {
    std::string what;
    std::string state;
    try {
      throw;
    } catch (const casecore::error&) {
      throw;
    } catch (const pqxx::broken_connection& e) {
      state = "08006"; // connection_failure
      what = e.what();
    } catch (const pqxx::in_doubt_error& e) {
      state = "40003"; // statement_completion_unknown: libpqxx lost the COMMIT's answer
      what = e.what();
    } catch (const pqxx::serialization_failure& e) {
      state = "40001";
      what = e.what();
    } catch (const pqxx::deadlock_detected& e) {
      state = "40P01";
      what = e.what();
    } catch (const pqxx::statement_completion_unknown& e) {
      state = "40003";
      what = e.what();
    } catch (const pqxx::transaction_rollback& e) {
      state = "40000"; // transaction_rollback
      what = e.what();
    } catch (const pqxx::sql_error& e) {
      state = e.sqlstate();
      what = e.what();
    } catch (const std::exception& e) {
      // Not a server error: a libpqxx usage or conversion error, or a dead socket found by libpq.
      if (!conn_.is_open()) state = "08006";
      what = e.what();
    }
    errc code = state.empty() ? errc::backend_error : map_sqlstate(state);
    if (state == "26000" || state == "42P05") {
      // A prepared statement this connection made is missing, or one it never made exists: another
      // client shares the server connection (a transaction pooler). Names are content hashes, so no
      // statement ran with the wrong text; from now on this backend uses unnamed statements. The
      // unit of work is not retried silently: the caller learns the pooler must be declared.
      shared_->unnamed = true;
      shared_->pooler_seen = true;
      names_.clear();
      code = errc::configuration;
      what = "a transaction pooler shares server connections between clients; casecore switched to unnamed "
             "statements — declare it in the URL with ?pooler=transaction (" + what + ")";
    }
    // A standby / demoted primary (25006) or a server shutting down (57P0x) is a lost connection:
    // discard it and reconnect, libpq's target_session_attrs finds the new primary.
    if (code == errc::connection_lost || code == errc::outcome_unknown || state == "25006" || state.starts_with("57P"))
      broken_ = true;
    if (at_commit && code == errc::connection_lost) {
      code = errc::outcome_unknown;
      what = "connection lost during COMMIT: " + what;
    }
    raise(code, "postgresql: " + shared_->scrub(what), state);
  }

public:
  result exec(std::string_view sql, std::span<const value> params) override {
    std::vector<std::string> texts;
    texts.reserve(params.size());
    std::vector<const char*> ptrs;
    ptrs.reserve(params.size());
    for (const auto& p : params) texts.push_back(to_text(p));
    for (std::size_t i = 0; i < params.size(); ++i)
      ptrs.push_back(std::holds_alternative<null_t>(params[i]) ? nullptr : texts[i].c_str());
    const auto r = shared_->unnamed ? unnamed_exec(std::string(sql), ptrs) : guarded([&] {
      return work_->exec_prepared(prepared(sql), pqxx::prepare::make_dynamic_params(ptrs));
    });
    const auto cols = static_cast<std::size_t>(r.columns());
    std::vector<pqxx::oid> types(cols);
    for (std::size_t c = 0; c < cols; ++c) types[c] = r.column_type(static_cast<pqxx::row::size_type>(c));
    std::vector<value> cells;
    cells.reserve(cols * r.size());
    for (const auto& row : r)
      for (std::size_t c = 0; c < cols; ++c) cells.push_back(read_field(row[static_cast<pqxx::row::size_type>(c)], types[c]));
    return result(cols, std::move(cells), static_cast<std::int64_t>(r.affected_rows()));
  }

  void exec_script(std::string_view sql) override {
    guarded([&] { return work_->exec(std::string(sql)); });
  }

  void begin(const detail::tx_settings& s) override {
    // Everything explicit, in one round trip: the isolation level casecore's lock-then-read patterns
    // rely on whatever default_transaction_isolation says, timeouts and the search_path as SET LOCAL
    // (they end with the transaction, so nothing leaks into a pooled server connection).
    std::string sql = "BEGIN ISOLATION LEVEL ";
    sql += s.level == isolation::serializable ? "SERIALIZABLE" : s.level == isolation::repeatable_read ? "REPEATABLE READ" : "READ COMMITTED";
    sql += s.mode == detail::tx_mode::read ? " READ ONLY" : " READ WRITE";
    const auto statement = s.statement_timeout.count() > 0 ? s.statement_timeout : shared_->statement_timeout;
    const auto lock = s.lock_timeout.count() > 0 ? s.lock_timeout : shared_->lock_timeout;
    if (statement.count() > 0) sql += "; SET LOCAL statement_timeout = " + std::to_string(statement.count());
    if (lock.count() > 0) sql += "; SET LOCAL lock_timeout = " + std::to_string(lock.count());
    sql += "; SET LOCAL search_path = " + search_path();
    exec_script(sql);
  }

  void commit() override {
    // A server that already closed this session (restart, failover, terminated backend) left its
    // goodbye in the socket: found before COMMIT is sent, the transaction certainly rolled back.
    if (!alive_before_commit()) {
      broken_ = true;
      raise(errc::connection_lost, "postgresql: the connection was closed by the server before COMMIT (rolled back)");
    }
    try {
      work_->exec("COMMIT");
    } catch (...) {
      rethrow_translated(true);
    }
  }

  void rollback() noexcept override {
    if (broken_) return;
    try {
      work_->exec("ROLLBACK");
    } catch (...) {
      broken_ = true;
    }
  }

  bool ping() noexcept override {
    try {
      const auto r = unnamed_exec("SELECT pg_is_in_recovery()", {});
      // A primary pool must not hand out a connection to a node that has been demoted.
      if (shared_->primary && std::string_view(r[0][0].c_str()) == "t") broken_ = true;
      return !broken_;
    } catch (...) {
      broken_ = true;
      return false;
    }
  }

  bool broken() const noexcept override { return broken_ || !conn_.is_open(); }

  casecore::dialect dialect() const noexcept override { return casecore::dialect::postgresql; }
  const sql_fragments& sql() const noexcept override { return fragments; }

  std::optional<std::uint64_t> commit_position() override {
    if (!shared_->track_commits) return std::nullopt;
    try {
      return parse_lsn(unnamed_exec("SELECT pg_current_wal_lsn()::text", {})[0][0].c_str());
    } catch (...) {
      return std::nullopt; // no position: reads fall back to the primary until the next commit
    }
  }

  bool replayed(std::uint64_t position) override {
    const auto r = unnamed_exec("SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, '0/0')", {});
    if (std::string_view(r[0][0].c_str()) != "t") return true; // promoted: it has everything
    return parse_lsn(r[0][1].c_str()) >= position;
  }

private:
  // The path every transaction pins: ?schema= when given, else the server's configured path without
  // "$user" (a schema anyone with CREATE could add later, shadowing casecore's tables) and with
  // pg_temp last (temporary tables must not shadow them either).
  const std::string& search_path() const noexcept { return shared_->pinned_path; } // ready since probe()

  static std::string pin_search_path(std::string_view configured) {
    std::string out;
    std::size_t start = 0;
    bool quoted = false;
    for (std::size_t i = 0; i <= configured.size(); ++i) {
      if (i < configured.size() && configured[i] == '"') quoted = !quoted;
      if (i < configured.size() && (quoted || configured[i] != ',')) continue;
      auto item = configured.substr(start, i - start);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      start = i + 1;
      if (item.empty() || item == "\"$user\"" || item == "$user" || item == "pg_temp") continue;
      if (!out.empty()) out += ", ";
      out += item;
    }
    return out.empty() ? "pg_catalog, pg_temp" : out + ", pg_temp";
  }

  bool alive_before_commit() {
    if (!conn_.is_open()) return false;
    pollfd p{conn_.sock(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true; // nothing unsolicited arrived: the session is there
    try {
      conn_.get_notifs(); // consumes the input; a closed session throws broken_connection
    } catch (...) {
      return false;
    }
    return conn_.is_open();
  }

  const std::string& prepared(std::string_view sql) {
    if (auto it = names_.find(sql); it != names_.end()) return it->second;
    std::string name = statement_name(sql);
    guarded([&] {
      conn_.prepare(name, std::string(sql));
      return 0;
    });
    return names_.emplace(std::string(sql), std::move(name)).first->second;
  }

  std::shared_ptr<pg_shared> shared_;
  pqxx::connection conn_;
  std::optional<pqxx::nontransaction> work_;
  std::unordered_map<std::string, std::string, string_hash, std::equal_to<>> names_;
  bool broken_ = false;
};

class pg_backend final : public detail::backend {
public:
  explicit pg_backend(std::shared_ptr<pg_shared> shared, std::shared_ptr<detail::backend> replicas = nullptr)
      : shared_(std::move(shared)), replicas_(std::move(replicas)) {}

  std::unique_ptr<detail::connection> connect() override {
    try {
      return std::make_unique<pg_connection>(shared_);
    } catch (const casecore::error&) {
      throw;
    } catch (const pqxx::sql_error& e) {
      const errc code = map_sqlstate(e.sqlstate());
      raise(code == errc::busy ? errc::busy : code == errc::configuration ? errc::configuration : errc::backend_unavailable,
            "cannot connect to " + shared_->masked + ": " + shared_->scrub(e.what()), e.sqlstate());
    } catch (const std::exception& e) {
      const std::string msg = shared_->scrub(e.what());
      raise(classify_connect_failure(msg), "cannot connect to " + shared_->masked + ": " + msg);
    }
  }
  casecore::dialect dialect() const noexcept override { return casecore::dialect::postgresql; }
  std::string describe() const override { return shared_->masked; }
  std::shared_ptr<detail::backend> read_replicas() const override { return replicas_; }

  // VACUUM cannot run inside a transaction, and the pool's connections always run one: it gets a
  // connection of its own, throttled (cost delay 1 ms, as casecore's tables ask of autovacuum,
  // cost limit 2000): at autovacuum's limit of 200 one round over a 400 MB queue table outlasted a
  // 10^6-job drain and did not help it (last/first slice 0.55 vs 0.57 without it); at 2000 the
  // drain held 0.77-0.78 (0.50-0.72 without) at 1.3-1.4x the average pace (bench_jobs soak). The session
  // settings need a session of their own: behind a transaction pooler it does nothing (the server's
  // autovacuum settings are the remedy there; docs/leases-and-jobs.md).
  // The connection stays open for the next check (the maintenance leader asks once a second).
  bool vacuum(std::string_view table, std::int64_t min_dead_rows) override {
    if (shared_->unnamed.load()) return false;
    std::lock_guard g(vacuum_m_);
    try {
      if (!vacuum_conn_ || vacuum_conn_->broken()) {
        vacuum_conn_.reset();
        auto conn = connect();
        if (shared_->unnamed.load()) return false; // this connect detected a pooler
        conn->exec_script("SET search_path = " + shared_->pinned_path + "; SET vacuum_cost_delay = 1; SET vacuum_cost_limit = 2000");
        vacuum_conn_ = std::move(conn);
      }
      const value name{std::string(table)};
      const auto dead = vacuum_conn_->exec(
          "SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = to_regclass($1)), -1)",
          std::span<const value>(&name, 1));
      const auto n = dead[0].get<std::int64_t>(0);
      if (n < 0) raise(errc::not_found, "vacuum: no table " + std::string(table));
      if (n < min_dead_rows) return false;
      vacuum_conn_->exec_script("VACUUM (SKIP_LOCKED) " + std::string(table));
      return true;
    } catch (...) {
      vacuum_conn_.reset();
      throw;
    }
  }

  const pg_shared& shared() const noexcept { return *shared_; }

private:
  std::shared_ptr<pg_shared> shared_;
  std::shared_ptr<detail::backend> replicas_;
  std::mutex vacuum_m_;
  std::unique_ptr<detail::connection> vacuum_conn_;
};

std::shared_ptr<pg_shared> make_shared_settings(const database_url& url, internal::target which) {
  auto s = std::make_shared<pg_shared>();
  s->conninfo = internal::libpq_conninfo(url, which);
  s->masked = url.masked;
  s->password = url.password;
  if (auto it = url.driver.find("password"); it != url.driver.end()) s->password = it->second;
  s->primary = which == internal::target::primary;
  s->statement_timeout = std::chrono::milliseconds(url_param(url, "statement_timeout_ms", 0));
  s->lock_timeout = std::chrono::milliseconds(url_param(url, "lock_timeout_ms", 0));
  if (auto it = url.casecore.find("schema"); it != url.casecore.end()) {
    s->schema = it->second;
    s->pinned_path = s->schema + ", pg_temp";
    s->path_ready = true;
  }
  const auto mode = url.casecore.count("pooler") ? url.casecore.at("pooler") : std::string("auto");
  s->pooler = mode == "none" ? pooler_mode::none
              : mode == "session" ? pooler_mode::session
              : mode == "transaction" ? pooler_mode::transaction
                                      : pooler_mode::auto_detect;
  s->unnamed = s->pooler == pooler_mode::transaction;
  s->pooler_seen = s->pooler == pooler_mode::transaction || s->pooler == pooler_mode::session;
  return s;
}

} // namespace

std::shared_ptr<detail::backend> make_backend(const database_url& url, database_options& db_options) {
  if (url.scheme != "postgresql") raise(errc::bad_url, "not a postgresql URL: " + url.masked);
  apply_pool_params(url, db_options.pool);
  if (url.casecore.count("reconnect_budget_ms"))
    db_options.reconnect_budget = std::chrono::milliseconds(url_param(url, "reconnect_budget_ms", 0));
  std::shared_ptr<detail::backend> replicas;
  if (url.casecore.count("replicas"))
    replicas = std::make_shared<pg_backend>(make_shared_settings(url, internal::target::replicas));
  if (url.casecore.count("replica_wait_ms"))
    db_options.replica_wait = std::chrono::milliseconds(url_param(url, "replica_wait_ms", 0));
  auto primary = make_shared_settings(url, internal::target::primary);
  primary->track_commits = replicas != nullptr;
  return std::make_shared<pg_backend>(std::move(primary), std::move(replicas));
}

database open(const database_url& url, database_options db_options) {
  auto backend = make_backend(url, db_options);
  database db(std::move(backend), std::move(db_options));
  write_options probe;
  probe.reconnect_budget = std::chrono::milliseconds(0); // open() reports an unreachable server at once
  db.read([](transaction&) {}, probe); // connect now: an unreachable server fails here, typed
  return db;
}

bool behind_pooler(const database& db) noexcept {
  const auto* b = dynamic_cast<const pg_backend*>(db.backend().get());
  return b && b->shared().pooler_seen.load();
}

bool uses_unnamed_statements(const database& db) noexcept {
  const auto* b = dynamic_cast<const pg_backend*>(db.backend().get());
  return b && b->shared().unnamed.load();
}

} // namespace casecore::postgres
