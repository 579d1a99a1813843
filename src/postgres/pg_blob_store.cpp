// The blob_store port on PostgreSQL: object rows + chunk rows, streamed through upload rows.
#include <casecore/hash.hpp>
#include <casecore/postgres/blob_store.hpp>

#include <algorithm>
#include <cstring>

namespace casecore::postgres {

namespace {

constexpr std::string_view migration_sql = R"sql(
CREATE SEQUENCE casecore_blob_object_ids;
CREATE TABLE casecore_blob_objects (
  store text NOT NULL,
  key text COLLATE "C" NOT NULL,
  object_id bigint NOT NULL UNIQUE,
  size bigint NOT NULL,
  modified_us bigint NOT NULL,
  PRIMARY KEY (store, key)
);
CREATE TABLE casecore_blob_uploads (
  object_id bigint PRIMARY KEY,
  store text NOT NULL,
  touched_us bigint NOT NULL
);
CREATE INDEX casecore_blob_uploads_touched ON casecore_blob_uploads (touched_us);
CREATE TABLE casecore_blob_chunks (
  object_id bigint NOT NULL,
  seq integer NOT NULL,
  sha256 text NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (object_id, seq)
);
ALTER TABLE casecore_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE casecore_blob_fences (
  store text NOT NULL,
  scope text NOT NULL,
  token bigint NOT NULL,
  PRIMARY KEY (store, scope)
);
)sql";

blob to_blob(std::string_view bytes) {
  blob b;
  b.bytes.resize(bytes.size());
  if (!bytes.empty()) std::memcpy(b.bytes.data(), bytes.data(), bytes.size());
  return b;
}

// A chunk as stored, checked against the SHA-256 recorded when it was written.
std::string checked_chunk(const row_ref& row, int sha_col, int data_col, const std::string& key) {
  const auto data = row.get<blob>(static_cast<std::size_t>(data_col));
  std::string out(data.bytes.size(), '\0');
  if (!out.empty()) std::memcpy(out.data(), data.bytes.data(), out.size());
  if (sha256_hex(out) != row.get<std::string>(static_cast<std::size_t>(sha_col)))
    raise(errc::backend_error, "blob '" + key + "' has a chunk that fails its SHA-256 check");
  return out;
}

class pg_blob_store final : public blob_store {
public:
  pg_blob_store(database db, blob_store_options options) : db_(std::move(db)), opt_(std::move(options)) {}

private:
  class writer final : public blob_writer {
  public:
    explicit writer(pg_blob_store& store) : s_(store) {}
    ~writer() override { abort(); }

  protected:
    void do_write(std::span<const std::byte> bytes) override {
      if (failed_) raise(errc::backend_error, "blob writer failed earlier; open a new writer");
      auto p = reinterpret_cast<const char*>(bytes.data());
      auto n = bytes.size();
      while (n > 0) {
        const auto take = std::min(n, s_.opt_.chunk_size - buffer_.size());
        buffer_.append(p, take);
        p += take;
        n -= take;
        if (buffer_.size() == s_.opt_.chunk_size) flush();
      }
    }
    bool do_commit(const std::string& key) override { return publish(key, nullptr); }
    bool do_commit_fenced(const std::string& key, const fence& guard) override { return publish(key, &guard); }

    void do_abort() noexcept override {
      buffer_.clear();
      if (object_id_ == 0) return;
      const auto id = object_id_;
      object_id_ = 0;
      try {
        // Only while the upload row exists: after a commit whose outcome was unknown, the blob may
        // be published, and its chunks are no longer ours to delete.
        s_.db_.write([&](transaction& tx) {
          tx.exec("WITH gone AS (DELETE FROM casecore_blob_uploads WHERE object_id = $1 RETURNING object_id) "
                  "DELETE FROM casecore_blob_chunks WHERE object_id IN (SELECT object_id FROM gone)",
                  id);
        });
      } catch (...) {
        // Left for the stale-upload sweep.
      }
    }

  private:
    // One full chunk in its own transaction, under this writer's upload row.
    void flush() {
      const auto data = to_blob(buffer_);
      const auto hash = sha256_hex(buffer_);
      try {
        object_id_ = s_.db_.write([&](transaction& tx) {
          auto id = object_id_;
          if (id == 0) {
            s_.sweep(tx);
            id = tx.query_one<std::int64_t>("SELECT nextval('casecore_blob_object_ids')");
            tx.exec("INSERT INTO casecore_blob_uploads(object_id, store, touched_us) VALUES($1, $2, casecore_now_us())", id, s_.opt_.name);
          } else if (tx.exec("UPDATE casecore_blob_uploads SET touched_us = casecore_now_us() WHERE object_id = $1", id).affected() == 0) {
            raise(errc::backend_error, "blob upload was swept as stale before it finished");
          }
          tx.exec("INSERT INTO casecore_blob_chunks(object_id, seq, sha256, data) VALUES($1, $2, $3, $4)", id, seq_, hash, data);
          return id;
        });
      } catch (...) {
        failed_ = true;
        throw;
      }
      ++seq_;
      buffer_.clear();
    }

    // The publishing transaction: the fence, the object row (the primary key decides who creates
    // the key), and the last chunk, all or nothing.
    bool publish(const std::string& key, const fence* guard) {
      if (failed_) raise(errc::backend_error, "blob writer failed earlier; open a new writer");
      const auto last = to_blob(buffer_);
      const auto last_hash = sha256_hex(buffer_);
      const auto total = static_cast<std::int64_t>(size());
      const bool created = s_.db_.write([&](transaction& tx) {
        if (guard) s_.admit(tx, *guard);
        auto id = object_id_;
        if (id != 0) {
          if (tx.exec("DELETE FROM casecore_blob_uploads WHERE object_id = $1", id).affected() == 0)
            raise(errc::backend_error, "blob upload was swept as stale before its commit");
        } else {
          id = tx.query_one<std::int64_t>("SELECT nextval('casecore_blob_object_ids')");
        }
        const auto mine = tx.exec("INSERT INTO casecore_blob_objects(store, key, object_id, size, modified_us) "
                                  "VALUES($1, $2, $3, $4, casecore_now_us()) ON CONFLICT (store, key) DO NOTHING RETURNING object_id",
                                  s_.opt_.name, key, id, total);
        if (mine.empty()) {
          // Write-once: keep the existing blob, refresh its time (restarts the orphan sweep's grace).
          tx.exec("UPDATE casecore_blob_objects SET modified_us = casecore_now_us() WHERE store = $1 AND key = $2", s_.opt_.name, key);
          if (object_id_ != 0) tx.exec("DELETE FROM casecore_blob_chunks WHERE object_id = $1", id);
          return false;
        }
        if (!buffer_.empty())
          tx.exec("INSERT INTO casecore_blob_chunks(object_id, seq, sha256, data) VALUES($1, $2, $3, $4)", id, seq_, last_hash, last);
        return true;
      });
      object_id_ = 0; // published or deleted: nothing left for abort
      buffer_.clear();
      return created;
    }

    pg_blob_store& s_;
    std::string buffer_;
    std::int64_t object_id_ = 0; // the upload row, once the first full chunk was written
    int seq_ = 0;
    bool failed_ = false;
  };

  class reader final : public blob_reader {
  public:
    reader(pg_blob_store& store, std::string key, std::int64_t object_id, std::uint64_t size)
        : blob_reader(size), s_(store), key_(std::move(key)), object_id_(object_id) {}

  protected:
    std::size_t do_read(std::span<std::byte> out) override {
      if (at_ == chunk_.size()) fetch();
      const auto n = std::min(out.size(), chunk_.size() - at_);
      std::memcpy(out.data(), chunk_.data() + at_, n);
      at_ += n;
      return n;
    }

  private:
    void fetch() {
      chunk_ = s_.db_.read([&](transaction& tx) {
        const auto r = tx.exec("SELECT sha256, data FROM casecore_blob_chunks WHERE object_id = $1 AND seq = $2", object_id_, seq_);
        if (r.empty()) raise(errc::not_found, "blob '" + key_ + "' was removed while it was being read");
        return checked_chunk(r[0], 0, 1, key_);
      });
      if (chunk_.empty()) raise(errc::backend_error, "blob '" + key_ + "' has an empty chunk");
      ++seq_;
      at_ = 0;
    }

    pg_blob_store& s_;
    std::string key_;
    std::int64_t object_id_;
    int seq_ = 0;
    std::string chunk_;
    std::size_t at_ = 0;
  };

  // Inside the writing transaction: the fence row stays locked until commit, so fenced writers of
  // one scope serialise and the lower token is refused once the higher one committed.
  void admit(transaction& tx, const fence& guard) {
    const auto r = tx.exec("INSERT INTO casecore_blob_fences(store, scope, token) VALUES($1, $2, $3) "
                           "ON CONFLICT (store, scope) DO UPDATE SET token = excluded.token "
                           "WHERE casecore_blob_fences.token <= excluded.token RETURNING token",
                           opt_.name, guard.scope, guard.token);
    if (!r.empty()) return;
    const auto held = tx.query_one<std::int64_t>("SELECT token FROM casecore_blob_fences WHERE store = $1 AND scope = $2", opt_.name, guard.scope);
    raise(errc::lease_lost, "blob write fenced off: token " + std::to_string(guard.token) + " is older than " +
                                std::to_string(held) + " for '" + guard.scope + "'");
  }

  // Uploads nobody touched for stale_upload_after belong to writers that died: drop them.
  void sweep(transaction& tx) {
    tx.exec("WITH gone AS (DELETE FROM casecore_blob_uploads WHERE touched_us < casecore_now_us() - $1 RETURNING object_id) "
            "DELETE FROM casecore_blob_chunks WHERE object_id IN (SELECT object_id FROM gone)",
            static_cast<std::int64_t>(opt_.stale_upload_after.count()) * 1000);
  }

  bool erase(const std::string& key, const fence* guard) {
    return db_.write([&](transaction& tx) {
      if (guard) admit(tx, *guard);
      const auto r = tx.exec("DELETE FROM casecore_blob_objects WHERE store = $1 AND key = $2 RETURNING object_id", opt_.name, key);
      if (r.empty()) return false;
      tx.exec("DELETE FROM casecore_blob_chunks WHERE object_id = $1", r[0].get<std::int64_t>(0));
      return true;
    });
  }

protected:
  std::unique_ptr<blob_writer> do_open_writer() override { return std::make_unique<writer>(*this); }

  std::string do_get(const std::string& key) override {
    write_options snapshot;
    snapshot.level = isolation::repeatable_read; // the object row and its chunks from one snapshot
    return db_.read(
        [&](transaction& tx) {
          const auto o = tx.exec("SELECT object_id, size FROM casecore_blob_objects WHERE store = $1 AND key = $2", opt_.name, key);
          if (o.empty()) raise(errc::not_found, "blob '" + key + "' not found");
          const auto size = static_cast<std::size_t>(o[0].get<std::int64_t>(1));
          std::string out;
          out.reserve(size);
          int expected = 0;
          for (auto row : tx.exec("SELECT seq, sha256, data FROM casecore_blob_chunks WHERE object_id = $1 ORDER BY seq",
                                  o[0].get<std::int64_t>(0))) {
            if (row.get<int>(0) != expected++) raise(errc::backend_error, "blob '" + key + "' is missing a chunk");
            out += checked_chunk(row, 1, 2, key);
          }
          if (out.size() != size) raise(errc::backend_error, "blob '" + key + "' is incomplete");
          return out;
        },
        snapshot);
  }

  std::unique_ptr<blob_reader> do_open_reader(const std::string& key) override {
    const auto o = db_.read([&](transaction& tx) {
      return tx.exec("SELECT object_id, size FROM casecore_blob_objects WHERE store = $1 AND key = $2", opt_.name, key);
    });
    if (o.empty()) raise(errc::not_found, "blob '" + key + "' not found");
    return std::make_unique<reader>(*this, key, o[0].get<std::int64_t>(0), static_cast<std::uint64_t>(o[0].get<std::int64_t>(1)));
  }

  bool do_exists(const std::string& key) override {
    return db_.read([&](transaction& tx) {
      return !tx.exec("SELECT 1 FROM casecore_blob_objects WHERE store = $1 AND key = $2", opt_.name, key).empty();
    });
  }

  bool do_remove(const std::string& key) override { return erase(key, nullptr); }
  bool do_remove_fenced(const std::string& key, const fence& guard) override { return erase(key, &guard); }

  std::vector<blob_info> do_list() override {
    return db_.read([&](transaction& tx) {
      std::vector<blob_info> out;
      for (auto row : tx.exec("SELECT key, size, modified_us FROM casecore_blob_objects WHERE store = $1 ORDER BY key", opt_.name))
        out.push_back({row.get<std::string>(0), static_cast<std::uint64_t>(row.get<std::int64_t>(1)), row.get<std::int64_t>(2)});
      return out;
    });
  }

private:
  database db_;
  blob_store_options opt_;
};

} // namespace

std::vector<migration> blob_store_migrations() {
  return {migration{"casecore_pg_blobs", 1, "blob objects, chunks, uploads and fences", "", "", std::string(migration_sql)}};
}

std::unique_ptr<blob_store> make_blob_store(database db, blob_store_options options) {
  if (db.dialect() != dialect::postgresql) raise(errc::invalid_argument, "the PostgreSQL blob store needs a PostgreSQL database");
  const auto& n = options.name;
  if (n.empty() || n.size() > 100 || !std::all_of(n.begin(), n.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
    raise(errc::invalid_argument, "blob store name must be 1..100 printable ASCII characters");
  if (options.chunk_size < 4096 || options.chunk_size > (std::size_t{64} << 20))
    raise(errc::invalid_argument, "blob chunk_size must be 4 KiB .. 64 MiB");
  if (options.stale_upload_after.count() <= 0) raise(errc::invalid_argument, "stale_upload_after must be positive");
  const auto steps = blob_store_migrations();
  migrate(db, steps);
  return std::make_unique<pg_blob_store>(std::move(db), std::move(options));
}

} // namespace casecore::postgres
