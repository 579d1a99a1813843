// casecore/postgres/blob_store.hpp — the blob_store port on PostgreSQL: blobs every host shares.
//
// Concept: a blob is a row in casecore_blob_objects (store name, key, size, modified time, object
// id) and its bytes are chunk rows in casecore_blob_chunks (object id, sequence number, SHA-256,
// bytea of at most chunk_size bytes, stored uncompressed). Every host that reaches the database
// reads and writes the same blobs; there is no other service to run, back up or secure.
// Writing streams: a writer keeps one chunk in memory; each full chunk is written in its own short
// transaction under an "upload" row, so a 2 GiB blob never sits in memory or in one transaction.
// commit() then publishes in one transaction: INSERT the object row ON CONFLICT DO NOTHING (the
// primary key decides, so of two hosts committing one key exactly one creates it; the other's
// chunks are deleted and it reports "not created"), plus the last chunk. Readers see a blob whole or
// not at all. open_reader() streams chunk by chunk (one chunk in memory) and checks each chunk's
// SHA-256; get() reads the whole blob in one snapshot.
// Abandoned uploads (a writer that crashed) are swept by the next writer that starts an upload
// once they have not been touched for stale_upload_after.
// Fencing: a fenced commit or remove checks and raises the scope's mark (casecore_blob_fences) in
// its publishing transaction; a stale token is refused with lease_lost and nothing changes.
// Guarantee: write-once keys, atomic publish, exactly-once creation across hosts, fenced writes
// atomic with their mark; durability is the database's (synchronous_commit).
// Cost and limits: each byte is sent hex-encoded (2x on the wire) and stored once in TOAST; a blob
// costs one row plus one row per chunk; suited to documents up to a few hundred MiB and a database
// that is backed up anyway. Very large or very many blobs belong in object storage (see
// docs/ports-across-hosts.md for an S3 adapter).
// Failure modes: the port's (not_found, invalid_argument, lease_lost); backend_error when a chunk
// fails its SHA-256 check, when an upload was swept before its commit, or for database errors;
// not_found from a reader whose blob was removed while it read. Works through a transaction pooler.
// Example:
//   auto store = casecore::postgres::make_blob_store(db);        // creates its tables if missing
//   casecore::file_registry files(db, *store);                   // registrations shared by hosts
// Thread safety: the store may be used from many threads and hosts at once; a writer or reader
// belongs to one thread. Each call is its own unit of work on `db`'s pool.
#pragma once

#include <casecore/database.hpp>
#include <casecore/migration.hpp>
#include <casecore/ports/blob_store.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::postgres {

/// Settings of a PostgreSQL blob store.
struct blob_store_options {
  /// Which store: several stores share the tables, told apart by this name (1..100 printable ASCII).
  std::string name = "default";
  /// Bytes per chunk row (4 KiB .. 64 MiB): the memory a writer or reader holds, and the unit of a
  /// write transaction.
  std::size_t chunk_size = std::size_t{1} << 20;
  /// An unfinished upload untouched for this long is deleted by the next writer that starts one.
  std::chrono::milliseconds stale_upload_after{std::chrono::hours(6)};
};

/// The tables the store needs (component "casecore_pg_blobs"); make_blob_store applies them.
std::vector<migration> blob_store_migrations();

/// A blob store in `db` (a PostgreSQL database); applies casecore's and the store's migrations.
std::unique_ptr<blob_store> make_blob_store(database db, blob_store_options options = {});

} // namespace casecore::postgres

CASECORE_API_END
