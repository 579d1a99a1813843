// fiu_driver — injected I/O faults on SQLite with libfiu (docs/testing.md, "Injected I/O faults").
//
// Run under libfiu's POSIX preload (`fiu-run -x -f "" fiu_driver ...`): every write / pwrite,
// fsync / fdatasync, open and read of the process then passes through a libfiu failure point, which
// this driver arms from inside the process with an external callback that counts the calls and
// fails exactly the Nth one with EIO.
//
// For each operation (file registration from a stream and from a path with the local blob store,
// counter::next in the caller's transaction, jobs::complete_stage) and each fault class, it runs
// the operation once without faults (the reference: the "before" and "after" database states), then
// for N = 1, 2, ... in a fresh copy of the prepared database, in a child process, fails the Nth call
// of that class, until a run completes without reaching its Nth call. For every N the parent checks,
// once the child is gone (as after a crash and restart):
//   * the call returned, or threw a casecore::error (any other exception or a crash is a violation);
//   * the database is exactly the "before" or the "after" state (row by row, timestamps aside), and
//     a call that returned is "after" (an acknowledged write is durable);
//   * PRAGMA integrity_check is ok, and every file row's blob exists and hashes to its key;
//   * the operation, repeated without faults, succeeds and keeps the invariants (gapless numbers,
//     one row per file, the job ends succeeded).
// A call that threw but whose write is in the database ("error, committed") is reported as a
// violation too, except for outcome_unknown, whose contract says exactly that.
//
// Usage: fiu_driver [--op NAME]... [--class write|sync|open|read]... [--max N] [--dir DIR] [--keep] [--verbose]
// Exit: 0 no violation, 1 violations (listed), 2 usage or not running under the preload.
#include <casecore/counter.hpp>
#include <casecore/error.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/ports/blob_store.hpp>

#include <fiu-control.h>
#include <fiu.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <typeinfo>
#include <vector>

namespace fs = std::filesystem;
using namespace casecore;

// Present in --coverage builds: a child leaves with _Exit, so it writes its counters itself.
extern "C" void __gcov_dump(void) __attribute__((weak));

namespace {

// --- fault points ----------------------------------------------------------------------------

struct fault_class {
  std::string name;
  std::vector<std::string> points; // libfiu POSIX preload failure points
};

const std::vector<fault_class> fault_classes{
    {"write", {"posix/io/rw/write", "posix/io/rw/pwrite", "posix/io/rw/writev", "posix/io/rw/pwritev"}},
    {"sync", {"posix/io/sync/fsync", "posix/io/sync/fdatasync"}},
    {"open", {"posix/io/oc/open"}},
    {"read", {"posix/io/rw/read", "posix/io/rw/pread"}},
};

std::atomic<long> calls{0};
std::atomic<long> target{0};
std::atomic<bool> fired{false};

// libfiu's external callback: called for every armed point; returns non-zero to make that call fail.
int count_and_fail(const char*, int*, void** failinfo, unsigned int*) {
  const long n = ++calls;
  if (n != target.load()) return 0;
  fired = true;
  *failinfo = reinterpret_cast<void*>(static_cast<std::intptr_t>(EIO)); // the preload sets errno from it
  return 1;
}

void arm(const fault_class& c, long n) {
  calls = 0;
  target = n;
  fired = false;
  for (const auto& p : c.points) fiu_enable_external(p.c_str(), 1, nullptr, 0, count_and_fail);
}

void disarm(const fault_class& c) {
  for (const auto& p : c.points) fiu_disable(p.c_str());
}

// True when the POSIX preload is in this process: failing the first open must make ::open fail.
bool preload_active() {
  const auto& open_class = fault_classes[2];
  arm(open_class, 1);
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int e = errno;
  disarm(open_class);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  return e == EIO;
}

// --- the prepared databases ------------------------------------------------------------------

std::string url_of(const fs::path& dir) { return "sqlite://" + (dir / "db.sqlite").string(); }

std::string sha_hex(std::string_view bytes) {
  casecore::sha256 h;
  h.update(bytes);
  return h.finish_hex();
}

// The state an operation may change, as text (timestamps left out: they differ between runs).
std::string snapshot(const fs::path& dir) {
  auto db = casecore::open(url_of(dir));
  return db.read([](transaction& tx) {
    std::ostringstream s;
    auto dump = [&](const char* title, const char* sql) {
      s << title << ":";
      for (auto r : tx.exec(sql)) {
        s << " (";
        for (std::size_t c = 0; c < r.size(); ++c) s << (c ? "," : "") << r.get<std::optional<std::string>>(c).value_or("NULL");
        s << ")";
      }
      s << "\n";
    };
    dump("counters", "SELECT name, scope, CAST(value AS TEXT) FROM casecore_counters ORDER BY name, scope");
    dump("invoices", "SELECT CAST(id AS TEXT), CAST(number AS TEXT) FROM fiu_invoice ORDER BY id");
    dump("files", "SELECT CAST(id AS TEXT), case_id, sha256, original_name, CAST(size AS TEXT), blob_key, registered_by "
                  "FROM casecore_files ORDER BY id");
    dump("jobs", "SELECT CAST(id AS TEXT), state, CAST(current_stage AS TEXT), CAST(attempts AS TEXT), "
                 "CAST(lease_epoch AS TEXT) FROM casecore_jobs ORDER BY id");
    dump("stages", "SELECT CAST(job_id AS TEXT), CAST(position AS TEXT), stage, state, CAST(attempts AS TEXT) "
                   "FROM casecore_job_stages ORDER BY job_id, position");
    return s.str();
  });
}

// Problems with the stored state (empty when none): integrity and blobs of every file row.
std::vector<std::string> storage_problems(const fs::path& dir) {
  std::vector<std::string> out;
  auto db = casecore::open(url_of(dir));
  const auto integrity = db.read([](transaction& tx) { return tx.query_one<std::string>("PRAGMA integrity_check"); });
  if (integrity != "ok") out.push_back("integrity_check: " + integrity);
  auto store = make_local_blob_store(dir / "blobs");
  const auto rows = db.read([](transaction& tx) {
    std::vector<std::pair<std::string, std::int64_t>> v;
    for (auto r : tx.exec("SELECT blob_key, size FROM casecore_files")) v.emplace_back(r.get<std::string>(0), r.get<std::int64_t>(1));
    return v;
  });
  for (const auto& [key, size] : rows) {
    if (!store->exists(key)) {
      out.push_back("row points at a missing blob " + key);
      continue;
    }
    const auto bytes = store->get(key);
    if (sha_hex(bytes) != key || static_cast<std::int64_t>(bytes.size()) != size)
      out.push_back("blob " + key + " does not hold the registered content");
  }
  return out;
}

// --- operations ------------------------------------------------------------------------------

struct operation {
  std::string name;
  std::function<void(const fs::path&)> setup;  // faults off: the "before" state
  // Faults off: reads what the call needs (e.g. the claim) and returns the call under test, which
  // then runs with the fault armed and opens its own handles.
  std::function<std::function<void()>(const fs::path&)> prepare;
  std::function<std::string(const fs::path&)> follow_up; // faults off: continue; "" when the invariants hold
};

const std::string existing_content = "existing file content\n";
std::string new_content() {
  std::string s;
  for (int i = 0; i < 3000; ++i) s += "line " + std::to_string(i) + " of the new evidence file\n"; // ~100 KB: several writes
  return s;
}

void common_setup(const fs::path& dir) {
  auto db = casecore::open(url_of(dir));
  const migration invoices{"fiu", 1, "invoices", "CREATE TABLE fiu_invoice(id {{id}}, number BIGINT NOT NULL UNIQUE)", "", ""};
  migrate(db, std::span(&invoices, 1));
  auto store = make_local_blob_store(dir / "blobs");
  file_registry reg(db, *store);
  std::istringstream in(existing_content);
  reg.register_stream("case-1", in, "existing.txt", "setup");
  db.write([](transaction& tx) {
    for (int i = 0; i < 5; ++i) tx.exec("INSERT INTO fiu_invoice(number) VALUES($1)", counter::next(tx, "invoice"));
  });
  std::ofstream(dir / "input.bin", std::ios::binary) << new_content();
}

std::string check_registration_follow_up(const fs::path& dir, const std::function<registration(file_registry&)>& again) {
  auto db = casecore::open(url_of(dir));
  auto store = make_local_blob_store(dir / "blobs");
  file_registry reg(db, *store);
  const auto r = again(reg);
  const auto rows = db.read([](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_files WHERE original_name = 'new.pdf'");
  });
  if (rows != 1) return "follow-up: " + std::to_string(rows) + " rows for new.pdf";
  if (r.sha256 != sha_hex(new_content())) return "follow-up: wrong hash";
  return "";
}

std::vector<operation> operations() {
  std::vector<operation> ops;
  ops.push_back({"register_stream", common_setup,
                 [](const fs::path& dir) {
                   return [dir, content = new_content()] {
                     auto db = casecore::open(url_of(dir));
                     auto store = make_local_blob_store(dir / "blobs");
                     file_registry reg(db, *store);
                     std::istringstream in(content);
                     reg.register_stream("case-1", in, "new.pdf", "fiu");
                   };
                 },
                 [](const fs::path& dir) {
                   return check_registration_follow_up(dir, [](file_registry& reg) {
                     std::istringstream in(new_content());
                     return reg.register_stream("case-1", in, "new.pdf", "fiu");
                   });
                 }});
  ops.push_back({"register_path", common_setup,
                 [](const fs::path& dir) {
                   return [dir] {
                     auto db = casecore::open(url_of(dir));
                     auto store = make_local_blob_store(dir / "blobs");
                     file_registry reg(db, *store);
                     reg.register_path("case-1", dir / "input.bin", "new.pdf", "fiu");
                   };
                 },
                 [](const fs::path& dir) {
                   return check_registration_follow_up(dir, [&](file_registry& reg) {
                     return reg.register_path("case-1", dir / "input.bin", "new.pdf", "fiu");
                   });
                 }});
  auto invoice = [](const fs::path& dir) {
    auto db = casecore::open(url_of(dir));
    db.write([](transaction& tx) { tx.exec("INSERT INTO fiu_invoice(number) VALUES($1)", counter::next(tx, "invoice")); });
  };
  ops.push_back({"counter_next", common_setup, [invoice](const fs::path& dir) { return [invoice, dir] { invoice(dir); }; },
                 [invoice](const fs::path& dir) -> std::string {
                   invoice(dir);
                   auto db = casecore::open(url_of(dir));
                   const auto [count, top, value] = db.read([](transaction& tx) {
                     auto r = tx.exec("SELECT count(*), max(number), (SELECT value FROM casecore_counters WHERE name = 'invoice') "
                                      "FROM fiu_invoice");
                     return std::tuple{r[0].get<std::int64_t>(0), r[0].get<std::int64_t>(1), r[0].get<std::int64_t>(2)};
                   });
                   // Numbers 1..count, no gap and no duplicate (UNIQUE), and the counter row agrees.
                   if (top != count || value != count)
                     return "follow-up: " + std::to_string(count) + " invoices, max number " + std::to_string(top) +
                            ", counter " + std::to_string(value);
                   return "";
                 }});
  ops.push_back({"complete_stage",
                 [](const fs::path& dir) {
                   common_setup(dir);
                   auto db = casecore::open(url_of(dir));
                   jobs::job_spec spec;
                   spec.operation = "index";
                   spec.subject = "file:1";
                   spec.stages = {"count", "index"};
                   jobs::enqueue(db, spec);
                   jobs::claim_options o;
                   o.owner = "fiu-worker";
                   o.lease = std::chrono::minutes(30);
                   const auto claimed = jobs::claim(db, o);
                   if (claimed.size() != 1) raise(errc::internal, "setup: claim failed");
                   const jobs::claim_ref ref{claimed[0].id, claimed[0].lease_epoch};
                   db.write([&](transaction& tx) { jobs::complete_stage(tx, ref, 0, 0); });
                   std::ofstream(dir / "claim") << ref.id << " " << ref.epoch;
                 },
                 [](const fs::path& dir) {
                   jobs::claim_ref ref;
                   std::ifstream(dir / "claim") >> ref.id >> ref.epoch;
                   return [dir, ref] {
                     auto db = casecore::open(url_of(dir));
                     db.write([&](transaction& tx) { jobs::complete_stage(tx, ref, 1, 0); });
                   };
                 },
                 [](const fs::path& dir) -> std::string {
                   jobs::claim_ref ref;
                   std::ifstream(dir / "claim") >> ref.id >> ref.epoch;
                   auto db = casecore::open(url_of(dir));
                   const auto before = jobs::get(db, ref.id);
                   if (!before) return "follow-up: the job is gone";
                   if (before->state == jobs::job_state::running)
                     db.write([&](transaction& tx) { jobs::complete_stage(tx, ref, 1, 0); });
                   const auto after = jobs::get(db, ref.id);
                   if (after->state != jobs::job_state::succeeded) return "follow-up: job ended " + std::string(jobs::to_string(after->state));
                   if (jobs::stages(db, ref.id).size() != 2) return "follow-up: stage records missing";
                   return "";
                 }});
  return ops;
}

// --- one faulted run in a child process --------------------------------------------------------

struct run_result {
  std::string outcome;    // "ok", "error:<errc>", "untyped:<what>", "crash:<signal>"
  bool fired = false;     // the Nth call was reached (and failed)
  long calls = 0;         // armed calls seen
  std::string message;    // the error's text
};

run_result run_in_child(const operation& op, const fault_class& c, long n, const fs::path& dir) {
  const fs::path report = dir / "outcome";
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid < 0) raise(errc::internal, "fork failed");
  if (pid == 0) {
    std::string outcome, message;
    std::function<void()> call;
    try {
      call = op.prepare(dir);
    } catch (const std::exception& e) {
      std::ofstream(report) << "setup-failed\n0\n0\n" << e.what() << "\n";
      std::_Exit(0);
    }
    if (n > 0) arm(c, n);
    try {
      call();
      outcome = "ok";
    } catch (const casecore::error& e) {
      outcome = "error:" + std::string(to_string(e.code()));
      message = e.what();
    } catch (const std::exception& e) {
      outcome = "untyped:" + std::string(typeid(e).name());
      message = e.what();
    } catch (...) {
      outcome = "untyped:unknown";
    }
    const bool hit = fired;
    const long seen = calls;
    if (n > 0) disarm(c);
    std::ofstream(report) << outcome << "\n" << hit << "\n" << seen << "\n" << message << "\n";
    if (__gcov_dump) __gcov_dump();
    std::_Exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run_result r;
  if (WIFSIGNALED(status)) {
    r.outcome = "crash:" + std::to_string(WTERMSIG(status));
    return r;
  }
  std::ifstream in(report);
  std::getline(in, r.outcome);
  in >> r.fired >> r.calls;
  in.ignore();
  std::getline(in, r.message);
  if (r.outcome.empty()) r.outcome = "crash:no-report (exit " + std::to_string(WEXITSTATUS(status)) + ")";
  return r;
}

void copy_dir(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

struct tally {
  long last_n = 0;                      // the N at which the fault was no longer reached
  long reference_calls = 0;             // calls of the class in the fault-free run
  std::map<std::string, int> outcomes;  // "ok", "error:backend_error (before)", ...
  std::vector<std::string> violations;
};

tally exercise(const operation& op, const fault_class& c, const fs::path& work, long max_n, bool verbose) {
  tally t;
  const fs::path tmpl = work / (op.name + ".template");
  if (!fs::exists(tmpl)) {
    fs::create_directories(tmpl);
    op.setup(tmpl);
  }
  const auto before = snapshot(tmpl);
  const fs::path ref_dir = work / (op.name + "." + c.name + ".reference");
  copy_dir(tmpl, ref_dir);
  // The reference: armed with an unreachable N, so the calls are counted but none fails.
  const auto ref = run_in_child(op, c, std::numeric_limits<long>::max(), ref_dir);
  if (ref.outcome != "ok") {
    t.violations.push_back("reference run without faults: " + ref.outcome + " " + ref.message);
    return t;
  }
  t.reference_calls = ref.calls;
  const auto after = snapshot(ref_dir);
  if (after == before) t.violations.push_back("the operation changes nothing: the check could not fail");
  fs::remove_all(ref_dir);

  for (long n = 1; n <= max_n; ++n) {
    const fs::path dir = work / (op.name + "." + c.name + "." + std::to_string(n));
    copy_dir(tmpl, dir);
    const auto r = run_in_child(op, c, n, dir);
    std::string where;
    try {
      const auto state = snapshot(dir);
      const bool is_before = state == before, is_after = state == after;
      where = is_after ? "after" : is_before ? "before" : "neither";
      const std::string label = r.outcome + " (" + where + ")";
      if (r.fired || r.outcome != "ok") ++t.outcomes[label];
      auto violation = [&](const std::string& what) {
        t.violations.push_back("N=" + std::to_string(n) + ": " + what + " [" + r.outcome + ": " + r.message + "]");
      };
      if (r.outcome.starts_with("untyped:") || r.outcome.starts_with("crash:")) violation("not a casecore::error");
      if (!is_before && !is_after) violation("database is neither before nor after:\n" + state);
      if (r.outcome == "ok" && !is_after) violation("the call returned but its write is not in the database");
      if (r.outcome.starts_with("error:") && r.outcome != "error:outcome_unknown" && is_after)
        violation("the call failed but its write is in the database");
      for (const auto& p : storage_problems(dir)) violation(p);
      if (const auto f = op.follow_up(dir); !f.empty()) violation(f);
      for (const auto& p : storage_problems(dir)) violation("after the follow-up: " + p);
    } catch (const std::exception& e) {
      t.violations.push_back("N=" + std::to_string(n) + ": checking failed: " + e.what());
    }
    if (verbose)
      std::cout << "  " << op.name << " " << c.name << " N=" << n << ": " << r.outcome << " (" << where << ")"
                << (r.fired ? "" : " [not reached]") << (r.message.empty() ? "" : " — " + r.message.substr(0, 160)) << "\n";
    fs::remove_all(dir);
    if (!r.fired) {
      t.last_n = n;
      if (r.outcome != "ok") t.violations.push_back("N=" + std::to_string(n) + ": no fault reached, yet " + r.outcome);
      return t;
    }
  }
  t.violations.push_back("the operation still reached its " + std::to_string(max_n) + "th call (raise --max)");
  t.last_n = max_n;
  return t;
}

int usage() {
  std::cerr << "usage: fiu_driver [--op register_stream|register_path|counter_next|complete_stage]... "
               "[--class write|sync|open|read]... [--max N] [--dir DIR] [--keep] [--verbose]\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  std::set<std::string> want_ops, want_classes;
  long max_n = 400;
  fs::path work;
  bool keep = false, verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage());
      return argv[++i];
    };
    if (a == "--op") want_ops.insert(value());
    else if (a == "--class") want_classes.insert(value());
    else if (a == "--max") max_n = std::stol(value());
    else if (a == "--dir") work = value();
    else if (a == "--keep") keep = true;
    else if (a == "--verbose") verbose = true;
    else return usage();
  }
  fiu_init(0);
  if (!preload_active()) {
    std::cerr << "fiu_driver: libfiu's POSIX preload is not active; run me as: fiu-run -x -f \"\" " << argv[0] << " ...\n";
    return 2;
  }
  if (work.empty()) {
    const char* t = std::getenv("TMPDIR");
    work = fs::path(t && *t ? t : "/tmp") / ("casecore-fiu-" + std::to_string(::getpid()));
  }
  fs::create_directories(work);

  int violations = 0;
  std::ostringstream table;
  table << std::left << std::setw(17) << "operation" << std::setw(7) << "class" << std::setw(8) << "calls" << std::setw(9)
        << "N range" << "outcomes\n";
  for (const auto& op : operations()) {
    if (!want_ops.empty() && !want_ops.count(op.name)) continue;
    for (const auto& c : fault_classes) {
      if (!want_classes.empty() && !want_classes.count(c.name)) continue;
      const auto t = exercise(op, c, work, max_n, verbose);
      std::string outcomes;
      for (const auto& [k, v] : t.outcomes) outcomes += (outcomes.empty() ? "" : ", ") + std::to_string(v) + "x " + k;
      table << std::left << std::setw(17) << op.name << std::setw(7) << c.name << std::setw(8) << t.reference_calls
            << std::setw(9) << ("1.." + std::to_string(t.last_n)) << outcomes << "\n";
      for (const auto& v : t.violations) std::cout << "VIOLATION " << op.name << " / " << c.name << ": " << v << "\n";
      violations += static_cast<int>(t.violations.size());
    }
  }
  std::cout << "\nInjected I/O faults on SQLite (EIO at the Nth call; N = 1 until a run no longer reaches it):\n"
            << table.str() << "violations: " << violations << "\n";
  if (!keep) fs::remove_all(work);
  return violations == 0 ? 0 : 1;
}
