// casecore/ports/blob_store.hpp — where file content lives: a flat namespace of immutable blobs.
//
// A blob is written through a blob_writer (stream the bytes, then commit under a key) so the caller
// can hash while writing and name the blob by its content only at the end. Blobs are write-once:
// committing a key that already exists keeps the existing blob, discards the new bytes and reports
// "not created" (content-addressed keys make both copies identical). A reader never sees a partial
// blob: the local store writes a temporary file, fsyncs it, links it into place and fsyncs the
// directory. A writer destroyed without commit leaves nothing behind.
//
// Reading: get() returns the whole blob; open_reader() streams it in pieces (stores that keep blobs
// in chunks or files override do_open_reader so a huge blob is never held in memory whole).
// Fencing (fence.hpp): commit/put/remove accept an optional fence; a write whose token is lower than
// the highest the store accepted for that scope is refused with lease_lost and changes nothing, so a
// paused job cannot publish or delete blobs after a newer claimant of its subject has written.
//
// Implementing the port (for S3, Azure, ...): derive from blob_store / blob_writer and override the
// protected do_* hooks; the public methods validate keys, fences and writer state first, so hooks
// only see valid input. Fenced writes go to do_commit_fenced / do_remove_fenced (the default refuses
// with errc::unsupported): check the scope's mark, raise it and write in one atomic step. Run
// casecore::testing::check_blob_store against it (testing/conformance.hpp). Shipped: the local
// directory (one host), memory (tests) and PostgreSQL chunks (many hosts, postgres/blob_store.hpp).
//
// Example:
//   auto w = store.open_writer();
//   while (read_some(in, buf)) w->write(buf);           // hash while streaming
//   w->commit(hasher.hex(), casecore::fence{"file:17", token});
//
// Thread safety: every blob_store method may be called from many threads (and processes, for
// stores that are shared) at once; concurrent commits of one key create it exactly once. A
// blob_writer and a blob_reader belong to one thread. Failure modes: not_found from get() /
// open_reader() / read() (and from a reader whose blob was removed while it read); invalid_argument
// for a malformed key or fence or a writer used after commit; lease_lost for a stale fence; any I/O
// failure as errc::backend_error.
//
// The local store is private by default: blobs 0600, folders 0700 (exact, whatever the umask),
// and it refuses (errc::configuration) an existing store folder owned by another user or writable
// by group / others beyond its dir_mode. Durability: a new shard folder's parent is fsynced, and a
// commit that finds its key already there fsyncs the existing file and its folder before answering
// "not created", so a row written after commit() never points at a blob lost to a power cut. It
// trusts the folder's owner: content is not verified here (keys are opaque to a store); the file
// registry, whose keys are content hashes, verifies what it finds (file_registry.hpp).
#pragma once

#include <casecore/ports/fence.hpp>
#include <casecore/value.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// One stored blob as list() reports it.
struct blob_info {
  std::string key;        ///< its key
  std::uint64_t size = 0; ///< length in bytes
  micros modified_us = 0; ///< last write or re-commit (the orphan sweep's grace period starts here)
};

/// Streams one new blob into a store; commit() publishes it atomically under a key.
class blob_writer {
public:
  virtual ~blob_writer() = default;
  /// Append bytes (invalid_argument after commit/abort).
  void write(std::span<const std::byte> bytes);
  /// Publish the bytes as `key`; true when created, false when the key already existed.
  /// With a fence: lease_lost (and nothing published) when a higher token was accepted for its scope.
  bool commit(std::string_view key, const fence& guard = {});
  /// Drop the bytes written so far (also done by the destructor of an uncommitted writer).
  void abort() noexcept;
  /// Bytes written so far.
  std::uint64_t size() const noexcept { return size_; }

protected:
  /// Append bytes to the pending blob.
  virtual void do_write(std::span<const std::byte> bytes) = 0;
  /// Make the pending blob durable and visible as `key` unless it exists (then refresh its time).
  virtual bool do_commit(const std::string& key) = 0;
  /// Discard the pending blob; must not throw.
  virtual void do_abort() noexcept = 0;
  /// do_commit guarded by `guard` (token > 0): refuse with lease_lost when the scope's mark is higher,
  /// else raise the mark and publish, atomically. Default: errc::unsupported.
  virtual bool do_commit_fenced(const std::string& key, const fence& guard);

private:
  bool open_ = true;
  std::uint64_t size_ = 0;
};

/// Streams one stored blob in pieces.
class blob_reader {
public:
  /// A reader of a blob of `size` bytes.
  explicit blob_reader(std::uint64_t size) noexcept : size_(size) {}
  virtual ~blob_reader() = default;
  /// Copy the next bytes into `out`; returns how many (0 only at the end or for an empty `out`).
  std::size_t read(std::span<std::byte> out);
  /// The blob's length.
  std::uint64_t size() const noexcept { return size_; }
  /// Bytes read so far.
  std::uint64_t position() const noexcept { return position_; }

protected:
  /// Copy up to out.size() (> 0) next bytes; the public method stops at size(), so hooks may assume
  /// bytes remain.
  virtual std::size_t do_read(std::span<std::byte> out) = 0;

private:
  std::uint64_t size_;
  std::uint64_t position_ = 0;
};

/// A store of immutable blobs addressed by key.
class blob_store {
public:
  virtual ~blob_store() = default;
  /// Start a new blob.
  std::unique_ptr<blob_writer> open_writer();
  /// Write `bytes` as `key` in one call; true when created (fenced like blob_writer::commit).
  bool put(std::string_view key, std::string_view bytes, const fence& guard = {});
  /// The whole content of `key` (not_found when absent).
  std::string get(std::string_view key);
  /// Stream the content of `key` (not_found when absent).
  std::unique_ptr<blob_reader> open_reader(std::string_view key);
  /// Push the content of `key` to `sink` in chunks (not_found when absent); memory stays at one
  /// chunk. A convenience over open_reader().
  void read(std::string_view key, const std::function<void(std::span<const std::byte>)>& sink);
  /// True when `key` is stored.
  bool exists(std::string_view key);
  /// Delete `key`; true when it existed. With a fence: lease_lost (nothing removed) when stale.
  bool remove(std::string_view key, const fence& guard = {});
  /// Every stored blob, in key order.
  std::vector<blob_info> list();

  /// True for keys a store must accept: 1..200 of [A-Za-z0-9_.-], not starting with '.'.
  static bool valid_key(std::string_view key) noexcept;

protected:
  /// Hooks implementers override; keys are already validated.
  virtual std::unique_ptr<blob_writer> do_open_writer() = 0;
  /// The whole object stored under `key` (not_found when absent).
  virtual std::string do_get(const std::string& key) = 0;
  /// True when `key` is stored.
  virtual bool do_exists(const std::string& key) = 0;
  /// Remove `key`; false when it was not there.
  virtual bool do_remove(const std::string& key) = 0;
  /// Every stored object.
  virtual std::vector<blob_info> do_list() = 0;
  /// do_remove guarded by `guard` (token > 0), atomically with the scope's mark. Default: unsupported.
  virtual bool do_remove_fenced(const std::string& key, const fence& guard);
  /// A reader of `key` (not_found when absent). Default: reads the whole blob with do_get.
  virtual std::unique_ptr<blob_reader> do_open_reader(const std::string& key);
};

/// Options of the local directory store.
struct local_blob_store_options {
  bool fsync = true; ///< fsync file and directory on commit (turn off only for throwaway data)
  /// Permission bits of blob files, applied exactly (fchmod, not subject to the umask). 0600: only the
  /// store's owner reads the evidence; widen deliberately (0640 for a service group), never to others.
  std::uint32_t file_mode = 0600;
  /// Permission bits of the store's folders (root, objects/, tmp/, shards), applied exactly; 0700.
  std::uint32_t dir_mode = 0700;
  /// Refuse an existing store folder owned by another user or writable by group / others beyond
  /// dir_mode (errc::configuration): its owner could plant blobs or symlinks. Turn off only for a
  /// store whose owner you trust for another reason. Own folders wider than dir_mode are tightened.
  bool check_ownership = true;
};

/// The default store: blobs as files under `dir` (objects/<2 hex>/<key>, temporaries in tmp/).
/// Safe to share between processes on one host.
std::unique_ptr<blob_store> make_local_blob_store(const std::filesystem::path& dir, local_blob_store_options options = {});

/// A reference store in memory (tests, caches); shared by the threads of one process only.
std::unique_ptr<blob_store> make_memory_blob_store();

} // namespace casecore

CASECORE_API_END
