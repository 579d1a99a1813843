// casecore/file_registry.hpp — idempotent registration of uploaded files per case.
//
// A file is identified within a case by (SHA-256 of its content, original name). Registering it
// streams the bytes once — hashing while copying them into the blob store — and then inserts the
// row with INSERT ... ON CONFLICT DO NOTHING RETURNING; when that returns nothing the existing row is
// read (looping insert → select until one of them answers). So the unique constraint decides, never
// a check-then-insert: of two uploads of one file racing from different processes, exactly one is
// told `registered`, the other `duplicate` with the first registrant's id, actor and time. Uploads
// of different files never wait for each other.
//
// Blobs are content-addressed (key = SHA-256), so identical content registered in many cases is
// stored once. The blob is durable before the row commits, and a row never points at a missing blob:
// the registering transaction re-checks the blob under a per-content lock that the orphan sweep also
// takes (PostgreSQL: pg_advisory_xact_lock; SQLite: the single writer). A registration that rolls
// back leaves its blob behind until sweep_orphans() removes blobs that no row references and that are
// older than a grace period. Use one blob store per database.
//
// Original names are metadata only: storage paths come from the hash, so a name containing "/",
// "\\" or ".." never reaches the filesystem. Names must be 1..255 bytes of printable UTF-8 (no
// controls, see validate_file_name). Failure modes: invalid_argument (bad case id / name, empty or
// oversized input, a path that is a symlink, FIFO, device or folder or holds a NUL — then nothing
// is stored), not_found (missing path; a staged blob that a sweep removed), blob store errors as
// thrown by the store (a writer that fails leaves no blob and no row), errc::backend_error for a
// stored blob whose content does not match its hash, database errors as usual. Thread safety: a
// file_registry may be used from many threads; all state is in the database and the blob store.
//
// Trust rules (docs/SECURITY.md):
// * Paths are opened once (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), the open descriptor is
//   fstat'ed and must be a regular file, and the bytes are read from that descriptor: a path swapped
//   for a FIFO, a device or another file mid-call cannot hang or redirect the registration. A
//   symlink as the last component is refused unless file_registry_options::follow_symlinks.
// * A hash is not proof of possession: a staged_blob can only be made by stage(), which read the
//   bytes, and register_staged() accepts it only from the file_registry that staged it. Knowing
//   another case's hash is not enough to link its content into a case.
// * The blob folder is not trusted to hold what its names claim: when stage() finds its hash
//   already stored, it verifies that blob's content (SHA-256 and size) first and replaces a blob
//   that does not match; read() verifies what it returns; verify_blobs() audits the whole store.
#pragma once

/// @file
/// Idempotent file registration (guarantee and failure modes: the comment above).
/// <!-- snippet: body(casecore::database& db) -->
/// @code
/// auto blobs = casecore::make_local_blob_store("/srv/app/blobs");
/// casecore::file_registry files(db, *blobs);
/// auto r = files.register_path("case-42", "/uploads/abc", "Report (final).pdf", "alice");
/// if (r.status == casecore::registration_status::duplicate) {
///   // r.id, r.registered_by, r.registered_at: the first registration of this content and name
/// }
/// @endcode

#include <casecore/database.hpp>
#include <casecore/ports/blob_store.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Knobs of a file_registry.
struct file_registry_options {
  std::uint64_t max_size = std::uint64_t{4} << 30; ///< larger input is refused (invalid_argument), nothing stored
  std::size_t chunk_size = 1 << 20;                ///< read buffer of the streaming copy
  /// Follow a symlink given as the path's last component (off: refused with invalid_argument).
  bool follow_symlinks = false;
};

/// Whether a registration created a row.
enum class registration_status { registered, duplicate };

/// The answer of a registration.
struct registration {
  registration_status status = registration_status::registered; ///< registered now, or already there
  std::int64_t id = 0;          ///< the row's id (the existing one for a duplicate)
  std::string sha256;           ///< content hash = blob key
  std::uint64_t size = 0;       ///< content length
  std::string registered_by;    ///< who registered it first
  micros registered_at = 0;     ///< when it was first registered (database clock)
};

/// A registered file.
struct file_record {
  std::int64_t id = 0;          ///< row id
  std::string case_id;          ///< the case it belongs to
  std::string sha256;           ///< content hash
  std::string original_name;    ///< the name as uploaded (metadata only)
  std::uint64_t size = 0;       ///< content length
  std::string blob_key;         ///< key in the blob store
  std::string registered_by;    ///< first registrant
  micros registered_at = 0;     ///< first registration time
};

/// Content already written to the blob store, ready to be registered inside a transaction. Opaque:
/// only file_registry::stage() makes one, and only that registry accepts it.
class staged_blob {
public:
  /// Content hash (the blob key).
  const std::string& sha256() const noexcept { return sha256_; }
  /// Content length.
  std::uint64_t size() const noexcept { return size_; }
  /// This call stored the blob (false: identical, verified content was there).
  bool created() const noexcept { return created_; }

private:
  friend class file_registry;
  staged_blob(std::string sha256, std::uint64_t size, bool created, std::uint64_t origin)
      : sha256_(std::move(sha256)), size_(size), created_(created), origin_(origin) {}
  std::string sha256_;
  std::uint64_t size_ = 0;
  bool created_ = false;
  std::uint64_t origin_ = 0; // the staging registry's process-unique id
};

/// Registers files of cases in a database, their bytes in a blob store.
class file_registry {
public:
  /// `store` must outlive the registry.
  file_registry(database db, blob_store& store, file_registry_options options = {});

  /// Register the file at `path` for `case_id` under `name` (its own transaction, actor recorded).
  registration register_path(std::string_view case_id, const std::filesystem::path& path, std::string_view name,
                             std::string_view actor);
  /// Register the content read from `in` (to its end) for `case_id` under `name`.
  registration register_stream(std::string_view case_id, std::istream& in, std::string_view name, std::string_view actor);

  /// Step 1 of registering inside the caller's transaction: store the bytes (call it outside the
  /// transaction — it has side effects).
  staged_blob stage(std::istream& in);
  /// Same, from a file.
  staged_blob stage(const std::filesystem::path& path);
  /// Step 2: register a staged blob in the caller's write transaction (actor = tx.actor()). If the
  /// transaction rolls back, the blob stays until sweep_orphans(). not_found when a sweep removed it;
  /// invalid_argument for a blob staged by another file_registry.
  registration register_staged(transaction& tx, std::string_view case_id, const staged_blob& blob, std::string_view name);

  /// The file with `id`, if any.
  std::optional<file_record> find(std::int64_t id);
  /// Every file of a case, by id.
  std::vector<file_record> files_of_case(std::string_view case_id);
  /// The content of file `id`, verified against its SHA-256 and size (not_found when no such file;
  /// errc::backend_error when the stored blob is missing or does not match — never wrong bytes).
  std::string read(std::int64_t id);
  /// Audit: stream every content-addressed blob of the store and return the keys whose content does
  /// not match their hash (planted or corrupt). Removes nothing; the host decides.
  std::vector<std::string> verify_blobs();
  /// Remove blobs that no row references and that were last written more than `grace` ago; returns
  /// how many were removed. Safe to run while registrations are going on (from any process).
  std::size_t sweep_orphans(std::chrono::milliseconds grace);

  /// The blob store.
  blob_store& store() noexcept { return store_; }

private:
  using chunk_reader = std::function<std::size_t(char* buf, std::size_t n)>;
  staged_blob stage_from(const chunk_reader& next);
  bool stored_matches(const std::string& sha, std::uint64_t size);
  database db_;
  blob_store& store_;
  file_registry_options options_;
  std::uint64_t id_; // process-unique: binds the staged_blobs it makes
};

/// Throws invalid_argument unless `name` is 1..255 bytes of printable UTF-8 (no C0 / C1 controls,
/// DEL, bidi overrides or invalid bytes; detail::check_printable). Case ids: 1..200, actors 0..200.
void validate_file_name(std::string_view name);

/// Deterministic id of a record extracted from a file: 32 hex digits of SHA-256 over the file id and
/// the record's position or content. Re-indexing the same file yields the same ids.
std::string event_id(std::int64_t file_id, std::string_view position_or_content);

} // namespace casecore

CASECORE_API_END
