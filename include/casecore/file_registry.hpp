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
// "\\" or ".." never reaches the filesystem. Names must be 1..255 bytes without NUL or other control
// characters. Failure modes: invalid_argument (bad case id / name, empty or oversized input — then
// nothing is stored), not_found (missing path; a staged blob that a sweep removed), blob store errors
// as thrown by the store (a writer that fails leaves no blob and no row), database errors as usual.
// Thread safety: a file_registry may be used from many threads; all state is in the database and the
// blob store.
#pragma once

#include <casecore/database.hpp>
#include <casecore/ports/blob_store.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace casecore {

/// Knobs of a file_registry.
struct file_registry_options {
  std::uint64_t max_size = std::uint64_t{4} << 30; ///< larger input is refused (invalid_argument), nothing stored
  std::size_t chunk_size = 1 << 20;                ///< read buffer of the streaming copy
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

/// Content already written to the blob store, ready to be registered inside a transaction.
struct staged_blob {
  std::string sha256;           ///< content hash (the blob key)
  std::uint64_t size = 0;       ///< content length
  bool created = false;         ///< this call stored the blob (false: identical content was there)
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
  /// transaction rolls back, the blob stays until sweep_orphans(). not_found when a sweep removed it.
  registration register_staged(transaction& tx, std::string_view case_id, const staged_blob& blob, std::string_view name);

  /// The file with `id`, if any.
  std::optional<file_record> find(std::int64_t id);
  /// Every file of a case, by id.
  std::vector<file_record> files_of_case(std::string_view case_id);
  /// Remove blobs that no row references and that were last written more than `grace` ago; returns
  /// how many were removed. Safe to run while registrations are going on (from any process).
  std::size_t sweep_orphans(std::chrono::milliseconds grace);

  /// The blob store.
  blob_store& store() noexcept { return store_; }

private:
  staged_blob stage_from(std::istream& in);
  database db_;
  blob_store& store_;
  file_registry_options options_;
};

/// Throws invalid_argument unless `name` is 1..255 bytes without NUL / control characters.
void validate_file_name(std::string_view name);

/// Deterministic id of a record extracted from a file: 32 hex digits of SHA-256 over the file id and
/// the record's position or content. Re-indexing the same file yields the same ids.
std::string event_id(std::int64_t file_id, std::string_view position_or_content);

} // namespace casecore
