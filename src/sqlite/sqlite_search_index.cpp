// The embedded search index: SQLite FTS5 in a database file of its own.
//
// Layout: search_docs(doc_id PRIMARY KEY, file_id) gives each document a stable rowid; the FTS5
// table search_text shares that rowid. The 'ascii' tokenizer is used on purpose: it splits and folds
// exactly like search_index::split_words (non-ASCII bytes are word characters), so this index and the
// in-memory reference answer the conformance queries identically.
// Fences: search_fences(scope, token) in the same file; the mark is checked and raised inside the
// writing BEGIN IMMEDIATE transaction, so the check and the write are atomic across processes.
#include <casecore/sqlite/search_index.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <mutex>

namespace casecore {

namespace {

[[noreturn]] void rethrow_sqlite(const SQLite::Exception& e, const char* what) {
  const int code = e.getErrorCode() & 0xff;
  raise(code == SQLITE_BUSY || code == SQLITE_LOCKED ? errc::busy : errc::backend_error,
        std::string("search index ") + what + ": " + e.what());
}

class sqlite_search_index final : public search_index {
public:
  explicit sqlite_search_index(const std::filesystem::path& path) try
      : db_(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX) {
    db_.setBusyTimeout(30000);
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA synchronous=NORMAL");
    SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
    db_.exec("CREATE TABLE IF NOT EXISTS search_docs(doc_id TEXT PRIMARY KEY, file_id INTEGER NOT NULL);"
             "CREATE INDEX IF NOT EXISTS search_docs_file ON search_docs(file_id);"
             "CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5(body, tokenize='ascii');"
             "CREATE TABLE IF NOT EXISTS search_fences(scope TEXT PRIMARY KEY, token INTEGER NOT NULL);");
    tx.commit();
  } catch (const SQLite::Exception& e) {
    rethrow_sqlite(e, "open");
  }

protected:
  void do_index(std::span<const search_document> docs) override { store(docs, nullptr); }
  void do_index_fenced(std::span<const search_document> docs, const fence& guard) override { store(docs, &guard); }
  std::size_t do_remove_file(std::int64_t file_id) override { return erase(file_id, nullptr); }
  std::size_t do_remove_file_fenced(std::int64_t file_id, const fence& guard) override { return erase(file_id, &guard); }

private:
  // Inside the writing transaction: refuse a token below the scope's mark, else raise the mark.
  void admit(const fence& guard) {
    SQLite::Statement up(db_, "INSERT INTO search_fences(scope, token) VALUES(?1, ?2) ON CONFLICT(scope) DO UPDATE "
                              "SET token = excluded.token WHERE token <= excluded.token RETURNING token");
    up.bind(1, guard.scope);
    up.bind(2, static_cast<std::int64_t>(guard.token));
    if (up.executeStep()) return;
    up.reset();
    SQLite::Statement mark(db_, "SELECT token FROM search_fences WHERE scope = ?1");
    mark.bind(1, guard.scope);
    const auto held = mark.executeStep() ? mark.getColumn(0).getInt64() : 0;
    raise(errc::lease_lost, "search index write fenced off: token " + std::to_string(guard.token) + " is older than " +
                                std::to_string(held) + " for '" + guard.scope + "'");
  }

  void store(std::span<const search_document> docs, const fence* guard) {
    std::lock_guard g(mutex_); // one connection: SQLiteCpp statements are not shareable
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      if (guard) admit(*guard);
      SQLite::Statement upsert(db_, "INSERT INTO search_docs(doc_id, file_id) VALUES(?1, ?2) "
                                    "ON CONFLICT(doc_id) DO UPDATE SET file_id = excluded.file_id RETURNING rowid");
      SQLite::Statement drop(db_, "DELETE FROM search_text WHERE rowid = ?1");
      SQLite::Statement add(db_, "INSERT INTO search_text(rowid, body) VALUES(?1, ?2)");
      for (const auto& d : docs) {
        upsert.bind(1, d.id);
        upsert.bind(2, static_cast<std::int64_t>(d.file_id));
        if (!upsert.executeStep()) raise(errc::internal, "upsert returned no rowid");
        const auto rowid = upsert.getColumn(0).getInt64();
        upsert.reset();
        drop.bind(1, rowid);
        drop.exec();
        drop.reset();
        add.bind(1, rowid);
        add.bind(2, d.text);
        add.exec();
        add.reset();
      }
      tx.commit();
    } catch (const SQLite::Exception& e) {
      rethrow_sqlite(e, "index");
    }
  }

  std::size_t erase(std::int64_t file_id, const fence* guard) {
    std::lock_guard g(mutex_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      if (guard) admit(*guard);
      SQLite::Statement text(db_, "DELETE FROM search_text WHERE rowid IN (SELECT rowid FROM search_docs WHERE file_id = ?1)");
      text.bind(1, static_cast<std::int64_t>(file_id));
      text.exec();
      SQLite::Statement docs(db_, "DELETE FROM search_docs WHERE file_id = ?1");
      docs.bind(1, static_cast<std::int64_t>(file_id));
      const int n = docs.exec();
      tx.commit();
      return static_cast<std::size_t>(n);
    } catch (const SQLite::Exception& e) {
      rethrow_sqlite(e, "remove_file");
    }
  }

protected:
  std::size_t do_count(std::optional<std::int64_t> file_id) override {
    std::lock_guard g(mutex_);
    try {
      SQLite::Statement q(db_, file_id ? "SELECT count(*) FROM search_docs WHERE file_id = ?1" : "SELECT count(*) FROM search_docs");
      if (file_id) q.bind(1, static_cast<std::int64_t>(*file_id));
      q.executeStep();
      return static_cast<std::size_t>(q.getColumn(0).getInt64());
    } catch (const SQLite::Exception& e) {
      rethrow_sqlite(e, "count");
    }
  }

  std::vector<std::string> do_query(const std::vector<std::string>& words, std::size_t limit) override {
    // Each word becomes a quoted FTS5 string (quotes doubled), so no word is read as query syntax;
    // juxtaposed strings mean AND. The expression is bound, never spliced into the SQL.
    std::string match;
    for (const auto& w : words) {
      if (!match.empty()) match += ' ';
      match += '"';
      for (char c : w) match += c == '"' ? std::string("\"\"") : std::string(1, c);
      match += '"';
    }
    std::lock_guard g(mutex_);
    try {
      SQLite::Statement q(db_, "SELECT d.doc_id FROM search_text JOIN search_docs d ON d.rowid = search_text.rowid "
                               "WHERE search_text MATCH ?1 ORDER BY d.doc_id LIMIT ?2");
      q.bind(1, match);
      q.bind(2, static_cast<std::int64_t>(limit));
      std::vector<std::string> out;
      while (q.executeStep()) out.push_back(q.getColumn(0).getString());
      return out;
    } catch (const SQLite::Exception& e) {
      rethrow_sqlite(e, "query");
    }
  }

private:
  std::mutex mutex_;
  SQLite::Database db_;
};

} // namespace

std::unique_ptr<search_index> make_sqlite_search_index(const std::filesystem::path& path) {
  if (path.empty()) raise(errc::invalid_argument, "search index needs a file path");
  return std::make_unique<sqlite_search_index>(path);
}

} // namespace casecore
