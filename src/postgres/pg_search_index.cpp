// The search_index port on PostgreSQL: the port's own words in a text[] with a GIN index.
#include <casecore/hash.hpp>
#include <casecore/postgres/search_index.hpp>

#include <algorithm>
#include <limits>
#include <set>

namespace casecore::postgres {

namespace {

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
    else return false;
    if (s.size() - i <= n) return false; // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8 (the server refuses them).
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

// The stored form of one word: itself, or "#<sha256>" when it is long or not UTF-8. '#' is never a
// word byte, so a hashed form cannot equal a plain word.
std::string stored_word(const std::string& w) {
  if (w.size() <= 64 && valid_utf8(w)) return w;
  return "#" + sha256_hex(w);
}

// A text[] literal of words. Words hold only [0-9a-z], bytes >= 0x80 and '#'+hex, but quote and
// escape anyway so the literal stays correct whatever split_words becomes.
std::string array_literal(const std::set<std::string>& words) {
  std::string out = "{";
  bool first = true;
  for (const auto& w : words) {
    if (!first) out += ',';
    first = false;
    out += '"';
    for (char c : w) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::set<std::string> stored_words(const std::vector<std::string>& words) {
  std::set<std::string> out;
  for (const auto& w : words) out.insert(stored_word(w));
  return out;
}

constexpr std::string_view migration_sql = R"sql(
CREATE TABLE casecore_search_docs (
  index_name text NOT NULL,
  doc_id text COLLATE "C" NOT NULL,
  file_id bigint NOT NULL,
  words text[] NOT NULL,
  PRIMARY KEY (index_name, doc_id)
);
CREATE INDEX casecore_search_docs_file ON casecore_search_docs (index_name, file_id);
CREATE INDEX casecore_search_docs_words ON casecore_search_docs USING gin (words);
CREATE TABLE casecore_search_fences (
  index_name text NOT NULL,
  scope text NOT NULL,
  token bigint NOT NULL,
  PRIMARY KEY (index_name, scope)
);
)sql";

class pg_search_index final : public search_index {
public:
  pg_search_index(database db, std::string name) : db_(std::move(db)), name_(std::move(name)) {}

protected:
  void do_index(std::span<const search_document> docs) override { store(docs, nullptr); }
  void do_index_fenced(std::span<const search_document> docs, const fence& guard) override { store(docs, &guard); }
  std::size_t do_remove_file(std::int64_t file_id) override { return erase(file_id, nullptr); }
  std::size_t do_remove_file_fenced(std::int64_t file_id, const fence& guard) override { return erase(file_id, &guard); }

  std::size_t do_count(std::optional<std::int64_t> file_id) override {
    return db_.read([&](transaction& tx) {
      const auto n = file_id ? tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_search_docs WHERE index_name = $1 AND file_id = $2", name_, *file_id)
                             : tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_search_docs WHERE index_name = $1", name_);
      return static_cast<std::size_t>(n);
    });
  }

  std::vector<std::string> do_query(const std::vector<std::string>& words, std::size_t limit) override {
    const auto wanted = array_literal(stored_words(words));
    const auto cap = static_cast<std::int64_t>(std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
    return db_.read([&](transaction& tx) {
      std::vector<std::string> out;
      for (auto row : tx.exec("SELECT doc_id FROM casecore_search_docs WHERE index_name = $1 AND words @> $2::text[] "
                              "ORDER BY doc_id LIMIT $3",
                              name_, wanted, cap))
        out.push_back(row.get<std::string>(0));
      return out;
    });
  }

private:
  struct prepared_doc {
    std::string id;
    std::int64_t file_id;
    std::string words;
  };

  // Inside the writing transaction: the fence row is locked until commit, so two fenced writers of
  // one scope serialise here and the lower token is refused once the higher one committed.
  void admit(transaction& tx, const fence& guard) {
    const auto r = tx.exec("INSERT INTO casecore_search_fences(index_name, scope, token) VALUES($1, $2, $3) "
                           "ON CONFLICT (index_name, scope) DO UPDATE SET token = excluded.token "
                           "WHERE casecore_search_fences.token <= excluded.token RETURNING token",
                           name_, guard.scope, guard.token);
    if (!r.empty()) return;
    const auto held = tx.query_one<std::int64_t>("SELECT token FROM casecore_search_fences WHERE index_name = $1 AND scope = $2", name_, guard.scope);
    raise(errc::lease_lost, "search index write fenced off: token " + std::to_string(guard.token) + " is older than " +
                                std::to_string(held) + " for '" + guard.scope + "'");
  }

  void store(std::span<const search_document> docs, const fence* guard) {
    std::vector<prepared_doc> batch;
    batch.reserve(docs.size());
    for (const auto& d : docs) {
      // libpq passes text parameters as C strings: a NUL would silently cut the id short.
      if (d.id.find('\0') != std::string::npos || !valid_utf8(d.id))
        raise(errc::invalid_argument, "PostgreSQL search index: document ids must be valid UTF-8 without NUL");
      batch.push_back({d.id, d.file_id, array_literal(stored_words(split_words(d.text)))});
    }
    // One lock order for every batch (by id) so overlapping concurrent batches never deadlock.
    std::sort(batch.begin(), batch.end(), [](const prepared_doc& a, const prepared_doc& b) { return a.id < b.id; });
    db_.write([&](transaction& tx) {
      if (guard) admit(tx, *guard);
      for (const auto& d : batch)
        tx.exec("INSERT INTO casecore_search_docs(index_name, doc_id, file_id, words) VALUES($1, $2, $3, $4::text[]) "
                "ON CONFLICT (index_name, doc_id) DO UPDATE SET file_id = excluded.file_id, words = excluded.words",
                name_, d.id, d.file_id, d.words);
    });
  }

  std::size_t erase(std::int64_t file_id, const fence* guard) {
    return db_.write([&](transaction& tx) {
      if (guard) admit(tx, *guard);
      const auto r = tx.exec("DELETE FROM casecore_search_docs WHERE index_name = $1 AND file_id = $2", name_, file_id);
      return static_cast<std::size_t>(r.affected());
    });
  }

  database db_;
  std::string name_;
};

} // namespace

std::vector<migration> search_index_migrations() {
  return {migration{"casecore_pg_search", 1, "search documents and fences", "", "", std::string(migration_sql)}};
}

std::unique_ptr<search_index> make_search_index(database db, search_index_options options) {
  if (db.dialect() != dialect::postgresql) raise(errc::invalid_argument, "the PostgreSQL search index needs a PostgreSQL database");
  const auto& n = options.name;
  if (n.empty() || n.size() > 100 || !std::all_of(n.begin(), n.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
    raise(errc::invalid_argument, "search index name must be 1..100 printable ASCII characters");
  const auto steps = search_index_migrations();
  migrate(db, steps);
  return std::make_unique<pg_search_index>(std::move(db), std::move(options.name));
}

} // namespace casecore::postgres
