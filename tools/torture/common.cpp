// Schema, names, stats files and ledgers of casecore-torture.
#include "torture.hpp"

#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/blob_store.hpp>
#endif

#include <casecore/migration.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <random>

namespace torture {

using namespace casecore;

const repository<hot_row>& hot_repository() {
  static const repository<hot_row> repo({"torture_hot", "id",
                                         {column("run_id", &hot_row::run_id), column("role", &hot_row::role),
                                          column("hot_value", &hot_row::value), column("balance", &hot_row::balance)}});
  return repo;
}

std::vector<migration> torture_migrations() {
  return {
      hot_repository().create_table_migration("torture", 1),
      {"torture", 2, "evidence tables",
       // No unique constraints on purpose: duplicates must be visible to the checks, not refused.
       "CREATE TABLE torture_ops(run_id TEXT NOT NULL, op_id TEXT NOT NULL, kind TEXT NOT NULL, k TEXT NOT NULL,"
       " n BIGINT NOT NULL);"
       "CREATE INDEX torture_ops_run ON torture_ops(run_id, kind);"
       "CREATE TABLE torture_fence(run_id TEXT NOT NULL, name TEXT NOT NULL, seq BIGINT NOT NULL,"
       " PRIMARY KEY(run_id, name));"
       "CREATE TABLE torture_fenced(run_id TEXT NOT NULL, name TEXT NOT NULL, seq BIGINT NOT NULL,"
       " token BIGINT NOT NULL, start_us BIGINT NOT NULL, end_us BIGINT NOT NULL);"
       "CREATE TABLE torture_delivered(run_id TEXT NOT NULL, msg_id BIGINT NOT NULL, payload TEXT NOT NULL);",
       "", ""},
  };
}

void setup_run(database& db, const std::string& run) {
  const auto extra = torture_migrations();
  migrate(db, extra);
  db.write([&](transaction& tx) {
    for (int i = 0; i < hot_rows; ++i) {
      hot_repository().insert(tx, {run, 0, 0, 0});
      hot_repository().insert(tx, {run, 1, 0, initial_balance});
    }
    for (int i = 0; i < lease_names; ++i)
      tx.exec("INSERT INTO torture_fence(run_id, name, seq) VALUES ($1, $2, 0)", run, lease_name(run, i));
  });
}

std::string counter_scope(const std::string& run) { return run; }
std::string job_operation(const std::string& run) { return "torture." + run; }
std::string outbox_topic(const std::string& run) { return "torture." + run; }
std::string lease_name(const std::string& run, int i) { return "torture:" + run + ":lease" + std::to_string(i); }
std::string case_id(const std::string& run) { return "torture-" + run; }
std::string file_name(int i) { return i % 2 ? "evidence/../report.bin" : "image " + std::to_string(i) + ".dd"; }

std::string file_content(int i) {
  // Deterministic per index, so every process uploads identical bytes for the same content.
  std::mt19937_64 rng(static_cast<std::uint64_t>(i) * 7919 + 1);
  std::string s(2048 + static_cast<std::size_t>(i) * 512, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

retry_policy long_retry() {
  retry_policy p;
  p.max_attempts = 200;
  p.budget = std::chrono::milliseconds(30000);
  p.max_delay = std::chrono::microseconds(250000);
  return p;
}

void record_op(transaction& tx, const std::string& run, const std::string& op, const char* kind, const std::string& k,
               std::int64_t n) {
  tx.exec("INSERT INTO torture_ops(run_id, op_id, kind, k, n) VALUES ($1, $2, $3, $4, $5)", run, op, std::string(kind), k,
          n);
}

void stats::add(const std::string& name, std::uint64_t n) {
  std::lock_guard g(m_);
  counts_[name] += n;
}

void stats::set(const std::string& name, std::uint64_t n) {
  std::lock_guard g(m_);
  counts_[name] = n;
}

std::map<std::string, std::uint64_t> stats::snapshot() const {
  std::lock_guard g(m_);
  return counts_;
}

void stats::save(const std::filesystem::path& path) const {
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [k, v] : snapshot()) out << k << ' ' << v << '\n';
  }
  std::filesystem::rename(tmp, path); // readers see the old or the new file, never half of one
}

std::map<std::string, std::uint64_t> stats::load(const std::filesystem::path& path) {
  std::map<std::string, std::uint64_t> out;
  std::ifstream in(path);
  std::string k;
  std::uint64_t v = 0;
  while (in >> k >> v) out[k] += v;
  return out;
}

ledger::ledger(const std::filesystem::path& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) raise(errc::internal, "cannot open ledger " + path.string());
}

ledger::~ledger() {
  if (fd_ >= 0) ::close(fd_);
}

void ledger::line(const std::string& text) {
  const std::string s = text + "\n";
  // One write per line: O_APPEND keeps lines of concurrent threads whole.
  if (::write(fd_, s.data(), s.size()) != static_cast<ssize_t>(s.size())) raise(errc::internal, "ledger write failed");
}

bool report::ok() const {
  for (const auto& [k, v] : invariants)
    if (v != 0) return false;
  return true;
}

std::unique_ptr<casecore::blob_store> open_blob_store(const worker_config& cfg, casecore::database& db) {
  if (cfg.blob_store == "postgres") {
#ifdef CASECORE_WITH_POSTGRES
    return casecore::postgres::make_blob_store(db);
#else
    casecore::raise(casecore::errc::unsupported, "built without PostgreSQL: no shared blob store");
#endif
  }
  return casecore::make_local_blob_store(cfg.dir / "blobs", {false});
}

} // namespace torture
