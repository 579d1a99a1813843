// tools/torture/torture.hpp — the parts of casecore-torture shared by the parent and its workers.
//
// casecore-torture runs P worker processes × T threads against one database for a set time, each
// mixing every casecore primitive (counters, versioned modify, bounded deltas, file registration,
// fenced leases, jobs, outbox), while the parent SIGKILLs workers, injects faults and restarts the
// server. Everything a run writes carries its run id, so runs never see each other's rows.
//
// Evidence: every write transaction also inserts one row into torture_ops (same transaction), so the
// database itself says which operations committed. After COMMIT returned, a worker appends an
// "acknowledged" line to its ledger file (one write(2) per line, so a SIGKILL loses at most the line
// being written, never a committed-and-acknowledged one). The parent's checks compare the ledgers
// with torture_ops and torture_ops with the business state (counters, rows, files, jobs, outbox).
// Commits of unknown outcome are logged as such and are neither acknowledged nor counted as lost.
#pragma once
#include <casecore/database.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/repository.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace torture {

/// What one worker process is told by the parent (passed as child arguments).
struct worker_config {
  std::string url;              ///< database URL
  std::string run;              ///< run id (scopes every row of the run)
  std::filesystem::path dir;    ///< run folder: blobs/, ledger/, stats/
  int threads = 4;              ///< worker threads
  std::int64_t deadline_ms = 0; ///< stop at this system_clock time (ms since epoch)
  double fault_rate = 0;        ///< busy, serialization and disconnect rate each
  std::uint64_t seed = 0;       ///< base seed
  int index = 0;                ///< worker slot, and how many were started before it (incarnation)
  /// Where file content lives: "local" (a folder of this machine, cfg.dir/blobs) or "postgres"
  /// (chunk rows in the database: what hosts that share nothing but PostgreSQL use).
  std::string blob_store = "local";
};

/// The blob store a run uses (see worker_config::blob_store).
std::unique_ptr<casecore::blob_store> open_blob_store(const worker_config& cfg, casecore::database& db);

/// A row of torture_hot: modify targets (role 0) and bounded-delta targets (role 1).
struct hot_row {
  std::string run_id;      ///< run
  std::int64_t role = 0;   ///< 0 = modify, 1 = delta
  std::int64_t value = 0;  ///< incremented by modify
  std::int64_t balance = 0;///< moved by bounded deltas, never below zero
};

inline constexpr int hot_rows = 3;              ///< rows per role
inline constexpr std::int64_t initial_balance = 100;
inline constexpr int lease_names = 2;           ///< leases workers fight over
inline constexpr int file_contents = 8;         ///< distinct file contents
inline constexpr int file_names = 2;            ///< names each content is uploaded under
inline constexpr int job_subjects = 24;         ///< subjects jobs are enqueued for (dedup happens)
inline const std::vector<std::string> job_stages{"count", "index", "rules"};

/// The versioned repository of torture_hot.
const casecore::repository<hot_row>& hot_repository();
/// The harness' own tables.
std::vector<casecore::migration> torture_migrations();
/// Migrate and create the run's rows (hot rows, fence rows).
void setup_run(casecore::database& db, const std::string& run);

/// Names derived from the run id.
std::string counter_scope(const std::string& run);
std::string job_operation(const std::string& run);
std::string outbox_topic(const std::string& run);
std::string lease_name(const std::string& run, int i);
std::string case_id(const std::string& run);
std::string file_content(int i);
std::string file_name(int i);

/// The retry budget every unit of work gets: long enough to ride out a server restart.
casecore::retry_policy long_retry();

/// Insert the torture_ops row of an operation (inside its transaction).
void record_op(casecore::transaction& tx, const std::string& run, const std::string& op, const char* kind,
               const std::string& k, std::int64_t n);

/// Named counters of a process, written to stats/<pid>.txt now and then (survives kills, approximately).
class stats {
public:
  /// Add `n` to counter `name`.
  void add(const std::string& name, std::uint64_t n = 1);
  /// Set counter `name`.
  void set(const std::string& name, std::uint64_t n);
  /// A copy of the counters.
  std::map<std::string, std::uint64_t> snapshot() const;
  /// Atomically rewrite `path` with "name value" lines.
  void save(const std::filesystem::path& path) const;
  /// Parse a file written by save().
  static std::map<std::string, std::uint64_t> load(const std::filesystem::path& path);
private:
  mutable std::mutex m_;
  std::map<std::string, std::uint64_t> counts_;
};

/// Append-only ledger of one process: one write(2) of one line per entry.
class ledger {
public:
  explicit ledger(const std::filesystem::path& path);
  ~ledger();
  ledger(const ledger&) = delete;
  ledger& operator=(const ledger&) = delete;
  /// Append one line (a '\n' is added).
  void line(const std::string& text);
private:
  int fd_ = -1;
};

/// Run one worker process until the deadline; returns its exit status.
int run_worker(const worker_config& cfg);

/// Figures and invariant results of a finished run.
struct report {
  std::map<std::string, std::uint64_t> figures;   ///< operations, retries, faults, kills...
  std::map<std::string, std::int64_t> invariants; ///< violation counts (all must be 0)
  std::vector<std::string> problems;              ///< first examples of each violation
  bool ok() const;
};

/// After the workers stopped: finish leftover jobs and outbox messages (no faults), then check
/// every invariant from the database and the ledgers.
void finish_and_check(casecore::database& db, const worker_config& cfg, report& out);

} // namespace torture
