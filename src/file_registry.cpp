#include "fd_guard.hpp"
#include "narrow.hpp"
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/migration.hpp>

#include <casecore/detail/step.hpp>
#include <casecore/detail/text.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <istream>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace casecore {

namespace detail {
std::vector<migration> file_migrations() {
  return {
      {"casecore.files", 1, "file registry",
       "CREATE TABLE casecore_files("
       " id {{id}}, case_id TEXT NOT NULL, sha256 TEXT NOT NULL, original_name TEXT NOT NULL,"
       " size BIGINT NOT NULL, blob_key TEXT NOT NULL, registered_by TEXT NOT NULL, registered_at BIGINT NOT NULL,"
       " CONSTRAINT casecore_files_identity UNIQUE(case_id, sha256, original_name));"
       "CREATE INDEX casecore_files_blob ON casecore_files(blob_key);",
       "", ""},
  };
}
} // namespace detail

namespace {

constexpr int max_insert_select_rounds = 16;

// Case ids, actors and names are shown to operators (`casecore file list`): printable UTF-8 only
// (no C0 / C1 controls, DEL, bidi overrides or invalid bytes, detail/text.hpp).
void validate_case_id(std::string_view case_id) { detail::check_printable(case_id, "case id", 200); }

void validate_actor(std::string_view actor) { detail::check_printable(actor, "actor", 200, true); }

// Serialises "is the blob there + insert the row" (registration) against "is the blob referenced +
// remove it" (sweep) for one content. SQLite write transactions are already serial; on PostgreSQL a
// transaction-scoped advisory lock keyed by the hash does it (released at commit/rollback, so it
// cannot leak through a pooler the way a session lock would).
constexpr std::int64_t lock_class = 0x43464c45; // "CFLE": casecore file blobs

// The second advisory-lock key of a content: the first 32 bits of its hash.
std::int64_t content_lock_key(const std::string& sha) {
  return static_cast<std::int32_t>(std::stoul(sha.substr(0, 8), nullptr, 16));
}

void lock_content(transaction& tx, const std::string& sha) {
  if (tx.dialect() != dialect::postgresql) return;
  tx.exec("SELECT pg_advisory_xact_lock($1::int, $2::int)", lock_class, content_lock_key(sha));
}

constexpr const char* insert_sql =
    "INSERT INTO casecore_files(case_id, sha256, original_name, size, blob_key, registered_by, registered_at) "
    "VALUES($1, $2, $3, $4, $2, $5, casecore_now_us()) "
    "ON CONFLICT (case_id, sha256, original_name) DO NOTHING RETURNING id, registered_by, registered_at";
// PostgreSQL: the same insert, taking the content lock for the inserted row in SHARED mode:
// registrations of one content never exclude each other, only the sweep (exclusive) excludes them.
constexpr const char* insert_locking_sql =
    "INSERT INTO casecore_files(case_id, sha256, original_name, size, blob_key, registered_by, registered_at) "
    "VALUES($1, $2, $3, $4, $2, $5, casecore_now_us()) "
    "ON CONFLICT (case_id, sha256, original_name) DO NOTHING "
    "RETURNING id, registered_by, registered_at, pg_advisory_xact_lock_shared(1128680517, $6::int)";

file_record to_record(const row_ref& r) {
  return {r.get<std::int64_t>(0), r.get<std::string>(1), r.get<std::string>(2), r.get<std::string>(3),
          r.get<std::uint64_t>(4), r.get<std::string>(5), r.get<std::string>(6), r.get<micros>(7)};
}

// Every registry gets an id no other registry of this process ever had (addresses can be reused).
std::uint64_t next_registry_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

using detail::fd_guard;

// Only for a descriptor stage() opened: open(2) refuses a socket (ENXIO) and, with O_NOFOLLOW or by
// following it, never yields a symbolic link, so those kinds cannot reach here.
const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

constexpr const char* record_columns =
    "SELECT id, case_id, sha256, original_name, size, blob_key, registered_by, registered_at FROM casecore_files ";

} // namespace

void validate_file_name(std::string_view name) { detail::check_printable(name, "file name", 255); }

std::string event_id(std::int64_t file_id, std::string_view position_or_content) {
  sha256 h;
  h.update("casecore.event\n");
  h.update(std::to_string(file_id));
  h.update("\n");
  h.update(position_or_content);
  return h.finish_hex().substr(0, 32);
}

file_registry::file_registry(database db, blob_store& store, file_registry_options options)
    : db_(std::move(db)), store_(store), options_(options), id_(next_registry_id()) {
  if (options_.max_size == 0) raise(errc::invalid_argument, "file_registry max_size must be positive");
  if (options_.chunk_size == 0 || options_.chunk_size > (64u << 20)) raise(errc::invalid_argument, "file_registry chunk_size must be 1 B..64 MiB");
}

bool file_registry::stored_matches(const std::string& sha, std::uint64_t size) {
  sha256 hash;
  std::uint64_t total = 0;
  store_.read(sha, [&](std::span<const std::byte> chunk) {
    hash.update(chunk);
    total += chunk.size();
  });
  return total == size && hash.finish_hex() == sha;
}

staged_blob file_registry::stage_from(const chunk_reader& next) {
  auto writer = store_.open_writer();
  try {
    sha256 hash;
    std::vector<char> buf(options_.chunk_size);
    std::uint64_t total = 0;
    // One pass: every chunk is hashed and written before the next is read; memory stays at one chunk.
    for (;;) {
      const auto n = next(buf.data(), buf.size());
      if (n == 0) break;
      total += n;
      if (total > options_.max_size)
        raise(errc::invalid_argument, "file is larger than the limit of " + std::to_string(options_.max_size) + " bytes");
      const auto bytes = std::as_bytes(std::span(buf.data(), n));
      hash.update(bytes);
      writer->write(bytes);
    }
    if (total == 0) raise(errc::invalid_argument, "file is empty");
    const auto sha = hash.finish_hex();
    // "Already stored" is accepted only for content that really hashes to its name: whoever can
    // write into the blob folder could otherwise plant bytes under a hash that this registration
    // would then claim. A mismatching blob is removed, so our verified bytes take its place.
    bool verified_existing = false;
    try {
      if (store_.exists(sha)) {
        verified_existing = stored_matches(sha, total);
        if (!verified_existing) store_.remove(sha);
      }
    } catch (const not_found&) { // swept meanwhile: our commit creates it
    }
    detail::step("files.stage.checked");
    const bool created = writer->commit(sha);
    detail::step("files.stage.committed");
    // Not created although we did not verify it: another writer stored it between our check and
    // our commit. Verify that one too. A sweep may remove that writer's blob (no row points at it
    // yet) before we read it: then nothing is stored for us and the caller stages again
    // (register_path does; found by the storm test under TSan's timing).
    bool matches = verified_existing;
    if (!created && !verified_existing) {
      try {
        matches = stored_matches(sha, total);
      } catch (const not_found&) {
        raise(errc::not_found, "blob " + sha + " was swept while it was being staged; stage the file again");
      }
    }
    if (!created && !matches) {
      store_.remove(sha);
      raise(errc::backend_error, "blob store held different content under " + sha + " (planted or corrupt); it was removed, stage again");
    }
    return staged_blob(sha, total, created, id_);
  } catch (...) {
    writer->abort();
    throw;
  }
}

staged_blob file_registry::stage(std::istream& in) {
  return stage_from([&](char* buf, std::size_t n) -> std::size_t {
    if (!in) return 0;
    in.read(buf, static_cast<std::streamsize>(n));
    if (in.bad()) raise(errc::invalid_argument, "reading the input failed");
    return static_cast<std::size_t>(in.gcount());
  });
}

staged_blob file_registry::stage(const std::filesystem::path& path) {
  // Open once, never by name again: O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO swapped
  // in from blocking the open, and everything after works on this descriptor only.
  // A NUL inside the path would silently cut it short at the system call: another file.
  if (path.native().find('\0') != std::string::npos) raise(errc::invalid_argument, "file path contains a NUL byte");
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (options_.follow_symlinks ? 0 : O_NOFOLLOW);
  const fd_guard fd(::open(path.c_str(), flags));
  if (fd.get() < 0) {
    const int e = errno;
    if (e == ENOENT || e == ENOTDIR) raise(errc::not_found, "no file at '" + path.string() + "'");
    if (e == ELOOP) raise(errc::invalid_argument, "'" + path.string() + "' is a symbolic link (set follow_symlinks to register its target)");
    raise(errc::invalid_argument, "cannot open '" + path.string() + "' for reading: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) raise(errc::invalid_argument, "cannot inspect '" + path.string() + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) raise(errc::invalid_argument, "'" + path.string() + "' is " + file_kind(st.st_mode) + ", not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > options_.max_size)
    raise(errc::invalid_argument, "file is larger than the limit of " + std::to_string(options_.max_size) + " bytes");
  detail::step("files.stage.opened");
  return stage_from([&](char* buf, std::size_t n) -> std::size_t {
    for (;;) {
      const ssize_t got = ::read(fd.get(), buf, n);
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno != EINTR) raise(errc::invalid_argument, "reading '" + path.string() + "' failed: " + std::strerror(errno));
    }
  });
}

registration file_registry::register_staged(transaction& tx, std::string_view case_id, const staged_blob& blob,
                                            std::string_view name) {
  validate_case_id(case_id);
  validate_file_name(name);
  if (blob.origin_ != id_)
    raise(errc::invalid_argument, "staged blob was not staged by this file_registry: stage the content with the registry that registers it");
  if (!tx.writable()) raise(errc::invalid_argument, "register_staged needs a write transaction");
  const auto& sha = blob.sha256_;
  const auto size = detail::narrow<std::int64_t>(blob.size_, "file size");
  const bool pg = tx.dialect() == dialect::postgresql;
  for (int round = 0; round < max_insert_select_rounds; ++round) {
    // On PostgreSQL the content lock is taken by the RETURNING clause, which runs only for an
    // inserted row: one round trip instead of two, and duplicates still take no lock.
    auto inserted = pg ? tx.exec(insert_locking_sql, case_id, sha, name, size, tx.actor(), content_lock_key(sha))
                       : tx.exec(insert_sql, case_id, sha, name, size, tx.actor());
    if (!inserted.empty()) {
      // The new row must not commit pointing at a blob a sweep removed since staging. Checked after
      // the insert, under the content lock: a sweep that ran before us is seen here (blob missing →
      // the whole transaction fails), a sweep after us waits for our commit and then sees the row.
      if (!store_.exists(sha))
        raise(errc::not_found, "blob " + sha + " was swept before it was registered; stage the file again");
      return {registration_status::registered, inserted[0].get<std::int64_t>(0), sha, blob.size_,
              inserted[0].get<std::string>(1), inserted[0].get<micros>(2)};
    }
    // A duplicate needs no lock: the existing committed row already keeps the blob from the sweep.
    // If that row vanished since the insert, the next round's insert wins.
    auto existing = tx.exec("SELECT id, registered_by, registered_at FROM casecore_files "
                            "WHERE case_id = $1 AND sha256 = $2 AND original_name = $3",
                            case_id, sha, name);
    if (!existing.empty())
      return {registration_status::duplicate, existing[0].get<std::int64_t>(0), sha, blob.size_,
              existing[0].get<std::string>(1), existing[0].get<micros>(2)};
  }
  raise(errc::internal, "file registration: insert and select kept missing each other");
}

registration file_registry::register_path(std::string_view case_id, const std::filesystem::path& path,
                                          std::string_view name, std::string_view actor) {
  validate_case_id(case_id);
  validate_file_name(name);
  validate_actor(actor);
  write_options o;
  o.actor = std::string(actor);
  // A sweep with a short grace period may remove the blob between staging and the insert; a path
  // can be read again, so stage once more (a stream cannot, see register_stream).
  for (int attempt = 1;; ++attempt) {
    try {
      const auto staged = stage(path);
      return db_.write([&](transaction& tx) { return register_staged(tx, case_id, staged, name); }, o);
    } catch (const not_found&) { // swept while staging or before the insert: stage once more
      if (attempt >= 8) throw;
    }
  }
}

registration file_registry::register_stream(std::string_view case_id, std::istream& in, std::string_view name,
                                            std::string_view actor) {
  validate_case_id(case_id);
  validate_file_name(name);
  validate_actor(actor);
  write_options o;
  o.actor = std::string(actor);
  const auto staged = stage(in);
  return db_.write([&](transaction& tx) { return register_staged(tx, case_id, staged, name); }, o);
}

std::optional<file_record> file_registry::find(std::int64_t id) {
  return db_.read([&](transaction& tx) -> std::optional<file_record> {
    auto r = tx.exec(std::string(record_columns) + "WHERE id = $1", id);
    if (r.empty()) return std::nullopt;
    return to_record(r[0]);
  });
}

std::vector<file_record> file_registry::files_of_case(std::string_view case_id) {
  validate_case_id(case_id);
  return db_.read([&](transaction& tx) {
    std::vector<file_record> out;
    for (auto r : tx.exec(std::string(record_columns) + "WHERE case_id = $1 ORDER BY id", case_id)) out.push_back(to_record(r));
    return out;
  });
}

std::string file_registry::read(std::int64_t id) {
  const auto f = find(id);
  if (!f) raise(errc::not_found, "file " + std::to_string(id) + " does not exist");
  std::string out;
  sha256 hash;
  try {
    store_.read(f->blob_key, [&](std::span<const std::byte> chunk) {
      hash.update(chunk);
      out.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    });
  } catch (const not_found&) {
    raise(errc::backend_error, "blob " + f->blob_key + " of file " + std::to_string(id) + " is missing from the blob store");
  }
  if (out.size() != f->size || hash.finish_hex() != f->sha256)
    raise(errc::backend_error, "blob " + f->blob_key + " of file " + std::to_string(id) +
                                   " does not match its SHA-256 / size: corrupt or replaced; not returned");
  return out;
}

std::vector<std::string> file_registry::verify_blobs() {
  std::vector<std::string> bad;
  for (const auto& b : store_.list()) {
    if (!is_sha256_hex(b.key)) continue;
    try {
      if (!stored_matches(b.key, b.size)) bad.push_back(b.key);
    } catch (const not_found&) { // removed meanwhile
    }
  }
  return bad;
}

std::size_t file_registry::sweep_orphans(std::chrono::milliseconds grace) {
  // Bounded so that grace in microseconds cannot overflow (and ten years is no sweep at all).
  if (grace.count() < 0 || grace > std::chrono::hours(24 * 3650))
    raise(errc::invalid_argument, "sweep grace period must be 0 .. 10 years");
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const micros cutoff = now_us - static_cast<micros>(grace.count()) * 1000;
  std::size_t removed = 0;
  for (const auto& b : store_.list()) {
    // Only content-addressed keys belong to the registry; blob time is only a hint (a registration
    // re-checks the blob under the lock), so clock skew costs a re-stage, never a dangling row.
    if (!is_sha256_hex(b.key) || b.modified_us > cutoff) continue;
    const bool gone = db_.write([&](transaction& tx) {
      lock_content(tx, b.key);
      if (tx.query_optional<std::int64_t>("SELECT id FROM casecore_files WHERE blob_key = $1 LIMIT 1", b.key)) return false;
      return store_.remove(b.key); // idempotent, so a retried transaction may run it again
    });
    if (gone) ++removed;
  }
  return removed;
}

} // namespace casecore
