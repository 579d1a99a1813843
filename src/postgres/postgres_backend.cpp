#include <casecore/postgres/postgres.hpp>

#include <pqxx/pqxx>

#include <charconv>
#include <optional>
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

blob from_bytea(std::string_view text) {
  blob b;
  if (text.starts_with("\\x")) {
    auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    b.bytes.reserve((text.size() - 2) / 2);
    for (std::size_t i = 2; i + 1 < text.size(); i += 2)
      b.bytes.push_back(static_cast<std::byte>(nibble(text[i]) * 16 + nibble(text[i + 1])));
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

class pg_connection final : public detail::connection {
public:
  explicit pg_connection(const std::string& conninfo) : conn_(conninfo) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    conn_.inhibit_reactivation(true); // a silent reconnect mid-transaction would run the rest in autocommit
#pragma GCC diagnostic pop
    work_.emplace(conn_, "casecore");
  }
  ~pg_connection() override {
    try {
      work_.reset();
      conn_.disconnect();
    } catch (...) {
    }
  }

private:
  template <class F> auto guarded(F&& f) {
    try {
      return f();
    } catch (...) {
      rethrow_translated(false);
    }
  }

  // The one place pqxx exceptions become casecore errors. During COMMIT a lost connection means the
  // outcome is unknown; before it, the transaction certainly did not commit.
  [[noreturn]] void rethrow_translated(bool at_commit) {
    errc code = errc::backend_error;
    std::string what;
    try {
      throw;
    } catch (const casecore::error&) {
      throw;
    } catch (const pqxx::broken_connection& e) {
      code = errc::connection_lost;
      what = e.what();
    } catch (const pqxx::in_doubt_error& e) {
      code = errc::outcome_unknown;
      what = e.what();
    } catch (const pqxx::serialization_failure& e) {
      code = errc::serialization_failure;
      what = e.what();
    } catch (const pqxx::deadlock_detected& e) {
      code = errc::deadlock;
      what = e.what();
    } catch (const pqxx::statement_completion_unknown& e) {
      code = errc::outcome_unknown;
      what = e.what();
    } catch (const pqxx::transaction_rollback& e) {
      code = errc::serialization_failure;
      what = e.what();
    } catch (const pqxx::sql_error& e) {
      code = map_sqlstate(e.sqlstate());
      what = e.what();
    } catch (const std::exception& e) {
      code = conn_.is_open() ? errc::backend_error : errc::connection_lost;
      what = e.what();
    }
    if (code == errc::connection_lost || code == errc::outcome_unknown) broken_ = true;
    if (at_commit && code == errc::connection_lost) {
      code = errc::outcome_unknown;
      what = "connection lost during COMMIT: " + what;
    }
    raise(code, "postgresql: " + what);
  }

public:
  result exec(std::string_view sql, std::span<const value> params) override {
    const auto& name = prepared(sql);
    std::vector<std::string> texts;
    texts.reserve(params.size());
    std::vector<const char*> ptrs;
    ptrs.reserve(params.size());
    for (const auto& p : params) texts.push_back(to_text(p));
    for (std::size_t i = 0; i < params.size(); ++i)
      ptrs.push_back(std::holds_alternative<null_t>(params[i]) ? nullptr : texts[i].c_str());
    const auto r = guarded([&] { return work_->exec_prepared(name, pqxx::prepare::make_dynamic_params(ptrs)); });
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
    // Everything explicit: the isolation level casecore's lock-then-read patterns rely on, whatever
    // default_transaction_isolation says, and timeouts as SET LOCAL (they end with the transaction).
    std::string sql = "BEGIN ISOLATION LEVEL ";
    sql += s.level == isolation::serializable ? "SERIALIZABLE" : s.level == isolation::repeatable_read ? "REPEATABLE READ" : "READ COMMITTED";
    sql += s.mode == detail::tx_mode::read ? " READ ONLY" : " READ WRITE";
    if (s.lock_timeout.count() > 0) sql += "; SET LOCAL lock_timeout = " + std::to_string(s.lock_timeout.count());
    if (s.statement_timeout.count() > 0) sql += "; SET LOCAL statement_timeout = " + std::to_string(s.statement_timeout.count());
    exec_script(sql);
  }

  casecore::dialect dialect() const noexcept override { return casecore::dialect::postgresql; }

  void commit() override {
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
      work_->exec("SELECT 1");
      return true;
    } catch (...) {
      broken_ = true;
      return false;
    }
  }

  bool broken() const noexcept override { return broken_ || !conn_.is_open(); }

private:
  const std::string& prepared(std::string_view sql) {
    if (auto it = names_.find(sql); it != names_.end()) return it->second;
    std::string name = "cc" + std::to_string(names_.size());
    guarded([&] {
      conn_.prepare(name, std::string(sql));
      return 0;
    });
    return names_.emplace(std::string(sql), std::move(name)).first->second;
  }

  pqxx::connection conn_;
  std::optional<pqxx::nontransaction> work_;
  std::unordered_map<std::string, std::string, string_hash, std::equal_to<>> names_;
  bool broken_ = false;
};

class pg_backend final : public detail::backend {
public:
  pg_backend(std::string conninfo, std::string masked, std::optional<std::int64_t> statement_timeout_ms)
      : conninfo_(std::move(conninfo)), masked_(std::move(masked)), statement_timeout_ms_(statement_timeout_ms) {}

  std::unique_ptr<detail::connection> connect() override {
    try {
      auto c = std::make_unique<pg_connection>(conninfo_);
      if (statement_timeout_ms_) c->exec_script("SET statement_timeout = " + std::to_string(*statement_timeout_ms_));
      return c;
    } catch (const casecore::error&) {
      throw;
    } catch (const pqxx::sql_error& e) {
      const errc code = map_sqlstate(e.sqlstate());
      raise(code == errc::busy ? errc::busy : errc::backend_unavailable,
            "cannot connect to " + masked_ + ": " + e.what());
    } catch (const std::exception& e) {
      raise(errc::backend_unavailable, "cannot connect to " + masked_ + ": " + e.what());
    }
  }
  casecore::dialect dialect() const noexcept override { return casecore::dialect::postgresql; }
  std::string describe() const override { return masked_; }

private:
  std::string conninfo_;
  std::string masked_;
  std::optional<std::int64_t> statement_timeout_ms_;
};


} // namespace

std::shared_ptr<detail::backend> make_backend(const database_url& url, database_options& db_options) {
  if (url.scheme != "postgresql") raise(errc::bad_url, "not a postgresql URL: " + url.masked);
  apply_pool_params(url, db_options.pool);
  std::optional<std::int64_t> stmt_timeout;
  if (url.casecore.count("statement_timeout_ms")) stmt_timeout = url_param(url, "statement_timeout_ms", 0);
  std::string conninfo = url.target;
  if (conninfo.find("connect_timeout=") == std::string::npos)
    conninfo += (conninfo.find('?') == std::string::npos ? "?" : "&") + std::string("connect_timeout=5");
  if (conninfo.find("application_name=") == std::string::npos) conninfo += "&application_name=casecore";
  return std::make_shared<pg_backend>(conninfo, url.masked, stmt_timeout);
}

database open(const database_url& url, database_options db_options) {
  auto backend = make_backend(url, db_options);
  database db(std::move(backend), std::move(db_options));
  write_options probe;
  probe.reconnect_budget = std::chrono::milliseconds(0); // open() reports an unreachable server at once
  db.read([](transaction&) {}, probe); // connect now: an unreachable server fails here, typed
  return db;
}

} // namespace casecore::postgres
