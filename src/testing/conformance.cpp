// The ports' contract suites. Every expectation names itself, so a host reading a failure knows
// which rule its implementation broke without opening this file.
#include <casecore/testing/conformance.hpp>
#include <casecore/testing/race.hpp>

#include <atomic>
#include <set>
#include <thread>

namespace casecore::testing {

namespace {

using namespace std::chrono_literals;

struct checker {
  std::string port;
  void expect(bool ok, const std::string& what) const {
    if (!ok) throw conformance_failure(port + ": " + what);
  }
  template <class F> void expect_error(errc code, F&& f, const std::string& what) const {
    try {
      f();
    } catch (const error& e) {
      if (e.code() == code) return;
      throw conformance_failure(port + ": " + what + " (threw " + std::string(to_string(e.code())) + ": " + e.what() + ")");
    } catch (const std::exception& e) {
      throw conformance_failure(port + ": " + what + " (threw a non-casecore exception: " + e.what() + ")");
    }
    throw conformance_failure(port + ": " + what + " (did not throw)");
  }
};

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 9)) & 0xff);
  return s;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// ---- blob store ------------------------------------------------------------------------------

void blob_basics(const checker& c, blob_store& s) {
  c.expect(s.list().empty(), "a new store lists no blobs");
  c.expect(!s.exists("k1"), "exists() is false for an absent key");
  c.expect_error(errc::not_found, [&] { s.get("k1"); }, "get() of an absent key throws not_found");
  c.expect(!s.remove("k1"), "remove() of an absent key returns false");
  c.expect(s.put("k1", "hello"), "the first put() of a key reports created");
  c.expect(s.get("k1") == "hello", "get() returns what put() stored");
  c.expect(s.exists("k1"), "exists() is true after put()");
  c.expect(!s.put("k1", "other"), "a second put() of a key reports not created");
  c.expect(s.get("k1") == "hello", "blobs are write-once: a second put() keeps the first content");
  c.expect(s.put("empty", ""), "an empty blob can be stored");
  c.expect(s.get("empty").empty(), "an empty blob reads back empty");
  const auto l = s.list();
  c.expect(l.size() == 2 && l[0].key == "empty" && l[1].key == "k1", "list() returns every key in order");
  c.expect(l[1].size == 5, "list() reports blob sizes");
  c.expect(l[1].modified_us > 0, "list() reports a modification time");
  c.expect(s.remove("k1"), "remove() of a stored key returns true");
  c.expect(!s.exists("k1"), "exists() is false after remove()");
  c.expect_error(errc::not_found, [&] { s.get("k1"); }, "get() after remove() throws not_found");
  c.expect(s.put("k1", "again"), "a removed key can be stored again");
  c.expect(s.get("k1") == "again", "the re-stored content is returned");
}

void blob_writers(const checker& c, blob_store& s) {
  const auto big = pattern(3 * 1024 * 1024 + 17, 1); // binary, with NULs, several chunks
  {
    auto w = s.open_writer();
    for (std::size_t off = 0; off < big.size(); off += 1000003)
      w->write(bytes_of(big.substr(off, 1000003)));
    c.expect(w->size() == big.size(), "a writer counts the bytes written");
    c.expect(w->commit("big"), "committing a streamed blob reports created");
    c.expect_error(errc::invalid_argument, [&] { w->write(bytes_of(big)); }, "write() after commit() throws invalid_argument");
    c.expect_error(errc::invalid_argument, [&] { w->commit("big2"); }, "a second commit() throws invalid_argument");
  }
  c.expect(s.get("big") == big, "a streamed blob reads back byte for byte");
  {
    auto w = s.open_writer();
    w->write(bytes_of(big));
    w->abort();
  }
  { s.open_writer()->write(bytes_of(std::string("dropped"))); } // destroyed without commit
  c.expect(s.list().size() == 1, "aborted or abandoned writers leave no blob");
  auto w = s.open_writer();
  w->write(bytes_of(std::string("zzz")));
  c.expect(!s.exists("late"), "bytes are invisible before commit()");
  c.expect(w->commit("late") && s.get("late") == "zzz", "bytes are visible after commit()");
}

void blob_bad_keys(const checker& c, blob_store& s) {
  for (const std::string& bad : {std::string(), std::string("../etc"), std::string(".hidden"), std::string("a/b"),
                                std::string("a\\b"), std::string("a b"), std::string(1, '\0'), std::string(201, 'k')}) {
    c.expect_error(errc::invalid_argument, [&] { s.put(bad, "x"); }, "put() refuses a malformed key");
    c.expect_error(errc::invalid_argument, [&] { s.get(bad); }, "get() refuses a malformed key");
    c.expect_error(errc::invalid_argument, [&] { s.exists(bad); }, "exists() refuses a malformed key");
    c.expect_error(errc::invalid_argument, [&] { s.remove(bad); }, "remove() refuses a malformed key");
  }
  c.expect(s.list().empty(), "refused keys store nothing");
  c.expect(s.put(std::string(200, 'k'), "x"), "a 200-character key is accepted");
}

void blob_concurrency(const checker& c, blob_store& s) {
  constexpr int keys = 8;
  constexpr int threads = 16;
  std::atomic<int> created{0}, torn{0};
  race(threads, [&](std::size_t t) {
    for (int round = 0; round < 4; ++round) {
      for (int k = 0; k < keys; ++k) {
        const int key = (k + static_cast<int>(t)) % keys;
        const auto content = pattern(20000 + static_cast<std::size_t>(key) * 1000, static_cast<unsigned>(key));
        if (s.put("key-" + std::to_string(key), content)) ++created;
        if (s.get("key-" + std::to_string(key)) != content) ++torn;
      }
    }
  });
  c.expect(created == keys, "concurrent puts of one key create it exactly once (created " + std::to_string(created.load()) + " times for " + std::to_string(keys) + " keys)");
  c.expect(torn == 0, "readers never see a partial blob while others put the same key");
  c.expect(s.list().size() == keys, "concurrent puts leave exactly one blob per key");
}

void blob_readers(const checker& c, blob_store& s) {
  const auto big = pattern(2 * 1024 * 1024 + 512 * 1024 + 3, 2);
  s.put("big", big);
  auto r = s.open_reader("big");
  c.expect(r->size() == big.size(), "a reader reports the blob's size");
  std::string got;
  std::vector<std::byte> buf(70001);
  for (std::size_t n; (n = r->read(buf)) > 0;) got.append(reinterpret_cast<const char*>(buf.data()), n);
  c.expect(got == big, "a reader streams the blob byte for byte");
  c.expect(r->position() == big.size() && r->read(buf) == 0, "a reader returns 0 once the blob is read");
  s.put("empty", "");
  auto e = s.open_reader("empty");
  c.expect(e->size() == 0 && e->read(buf) == 0, "a reader of an empty blob returns 0 at once");
  c.expect_error(errc::not_found, [&] { s.open_reader("absent"); }, "open_reader() of an absent key throws not_found");
  c.expect_error(errc::invalid_argument, [&] { s.open_reader("../x"); }, "open_reader() refuses a malformed key");
}

void blob_fencing(const checker& c, blob_store& s) {
  const fence f3{"file:1", 3}, f5{"file:1", 5}, f7{"file:1", 7};
  c.expect(s.put("a", "five", f5), "a fenced put is accepted");
  c.expect_error(errc::lease_lost, [&] { s.put("b", "three", f3); }, "a put with a token older than the scope's highest is refused with lease_lost");
  c.expect(!s.exists("b"), "a refused fenced put stores nothing");
  {
    auto w = s.open_writer();
    w->write(bytes_of(std::string("streamed by an old holder")));
    c.expect_error(errc::lease_lost, [&] { w->commit("b", f3); }, "a streamed commit with an older token is refused");
  }
  c.expect(!s.exists("b"), "a refused streamed commit publishes nothing");
  c.expect_error(errc::lease_lost, [&] { s.remove("a", f3); }, "a remove with an older token is refused");
  c.expect(s.get("a") == "five", "a refused remove removes nothing");
  c.expect(s.put("c", "same", f5), "the scope's current token is accepted again");
  c.expect(s.put("d", "unfenced"), "an unfenced write (token 0) is accepted after fenced ones");
  c.expect(s.put("e", "other", fence{"file:2", 1}), "scopes are independent: a low token on another scope is accepted");
  c.expect(s.remove("a", f7), "a newer token is accepted");
  c.expect_error(errc::lease_lost, [&] { s.put("f", "late", f5); }, "once a newer token wrote, the previous holder is refused");
  const auto before = s.list().size();
  c.expect_error(errc::invalid_argument, [&] { s.put("g", "x", fence{"file:1", -1}); }, "a negative token is refused");
  c.expect_error(errc::invalid_argument, [&] { s.put("g", "x", fence{"", 9}); }, "a fenced write needs a scope");
  c.expect_error(errc::invalid_argument, [&] { s.remove("c", fence{std::string(201, 's'), 9}); }, "a scope over 200 characters is refused");
  c.expect_error(errc::invalid_argument, [&] { s.put("g", "x", fence{"tab\there", 9}); }, "a scope with control characters is refused");
  c.expect(s.list().size() == before && s.exists("c"), "a malformed fence writes and removes nothing");
}

void blob_fencing_race(const checker& c, blob_store& s) {
  // Writers holding tokens 1..N of one scope race to replace one key (remove, then put their own
  // content). Whatever the interleaving, once the newest holder has written nobody older can, so
  // the key ends holding the newest holder's content.
  constexpr int writers = 8;
  for (int round = 0; round < 3; ++round) {
    const auto scope = "race-" + std::to_string(round);
    std::atomic<int> refused{0}, other{0};
    race(writers, [&](std::size_t i) {
      const fence f{scope, static_cast<std::int64_t>(i) + 1};
      try {
        s.remove(scope, f);
        s.put(scope, "holder " + std::to_string(f.token), f);
      } catch (const error& e) {
        if (e.code() == errc::lease_lost) ++refused;
        else ++other;
      }
    });
    c.expect(other == 0, "racing fenced writers fail only with lease_lost");
    c.expect(s.get(scope) == "holder " + std::to_string(writers), "of writers racing with increasing tokens, the newest one's blob stays");
  }
}

// ---- search index ----------------------------------------------------------------------------

std::vector<std::string> ids(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }

void search_basics(const checker& c, search_index& ix) {
  c.expect(ix.count() == 0, "a new index is empty");
  c.expect(ix.query("anything").empty(), "an empty index matches nothing");
  const std::vector<search_document> docs{{"d1", 1, "The quick brown Fox"},
                                          {"d2", 1, "a lazy dog, sleeping; quick-witted"},
                                          {"d3", 2, "Straße nach München: fox tracks"}};
  ix.index(docs);
  c.expect(ix.count() == 3, "count() counts indexed documents");
  c.expect(ix.count(1) == 2 && ix.count(2) == 1 && ix.count(9) == 0, "count(file) counts that file's documents");
  c.expect(ix.query("fox") == ids({"d1", "d3"}), "a word query returns matching ids in ascending order");
  c.expect(ix.query("QUICK fox") == ids({"d1"}), "every query word must match, ASCII case-insensitively");
  c.expect(ix.query("witted") == ids({"d2"}), "punctuation separates words");
  c.expect(ix.query("straße") == ids({"d3"}), "non-ASCII bytes are part of words");
  c.expect(ix.query("fox", 1) == ids({"d1"}), "limit caps the number of results");
  c.expect(ix.query("qui").empty(), "a word matches whole words only");
  c.expect(ix.query("\"fox\" OR NOT") .empty(), "query syntax characters are plain separators, operators are plain words");
  ix.index(docs);
  c.expect(ix.count() == 3, "indexing the same documents again does not duplicate them");
  ix.index(std::vector<search_document>{{"d1", 1, "slow green turtle"}});
  c.expect(ix.count() == 3, "re-indexing an id replaces the document");
  c.expect(ix.query("fox") == ids({"d3"}), "a replaced document no longer matches its old words");
  c.expect(ix.query("turtle") == ids({"d1"}), "a replaced document matches its new words");
  ix.index(std::vector<search_document>{{"d3", 1, "moved to file one"}});
  c.expect(ix.count(1) == 3 && ix.count(2) == 0, "re-indexing an id can move it to another file");
  c.expect(ix.remove_file(1) == 3, "remove_file() returns how many documents it removed");
  c.expect(ix.count() == 0 && ix.query("turtle").empty(), "remove_file() removes documents and their words");
  c.expect(ix.remove_file(1) == 0, "remove_file() of a file without documents removes nothing");
}

void search_bad_input(const checker& c, search_index& ix) {
  c.expect_error(errc::invalid_argument, [&] { ix.index(std::vector<search_document>{{"ok", 1, "x"}, {"", 1, "y"}}); }, "an empty id is refused");
  c.expect_error(errc::invalid_argument, [&] { ix.index(std::vector<search_document>{{std::string(201, 'i'), 1, "y"}}); }, "an id over 200 bytes is refused");
  c.expect_error(errc::invalid_argument, [&] { ix.index(std::vector<search_document>{{"a", 1, "x"}, {"a", 1, "y"}}); }, "a batch repeating an id is refused");
  c.expect(ix.count() == 0, "a refused batch indexes nothing");
  c.expect_error(errc::invalid_argument, [&] { ix.query("  ,;  "); }, "a query without words is refused");
}

void search_concurrency(const checker& c, search_index& ix) {
  constexpr int threads = 8;
  constexpr int docs_per_batch = 25;
  std::atomic<int> failures{0};
  race(threads, [&](std::size_t t) {
    for (int round = 0; round < 4; ++round) {
      std::vector<search_document> batch;
      for (int i = 0; i < docs_per_batch; ++i) {
        const int n = (static_cast<int>(t) * 7 + round * 11 + i) % 100;
        batch.push_back({"doc-" + std::to_string(1000 + n), n % 5, "shared word" + std::to_string(n) + " common"});
      }
      ix.index(batch);
      if (ix.query("common").empty()) ++failures;
    }
  });
  c.expect(failures == 0, "queries running next to concurrent indexing see committed documents");
  std::set<std::string> expected;
  for (int t = 0; t < threads; ++t)
    for (int round = 0; round < 4; ++round)
      for (int i = 0; i < docs_per_batch; ++i) expected.insert("doc-" + std::to_string(1000 + (t * 7 + round * 11 + i) % 100));
  c.expect(ix.count() == expected.size(), "concurrent overlapping batches leave one document per id");
  c.expect(ix.query("common", 1000).size() == expected.size(), "every concurrently indexed document is searchable");
}

void search_fencing(const checker& c, search_index& ix) {
  const fence f3{"file:1", 3}, f5{"file:1", 5}, f7{"file:1", 7};
  ix.index(std::vector<search_document>{{"a", 1, "alpha five"}}, f5);
  c.expect(ix.query("five") == ids({"a"}), "a fenced batch is indexed");
  c.expect_error(errc::lease_lost, [&] { ix.index(std::vector<search_document>{{"a", 1, "alpha three"}, {"b", 1, "beta"}}, f3); },
                 "a batch with a token older than the scope's highest is refused with lease_lost");
  c.expect(ix.count() == 1 && ix.query("five") == ids({"a"}) && ix.query("beta").empty(), "a refused batch changes no document");
  c.expect_error(errc::lease_lost, [&] { ix.remove_file(1, f3); }, "remove_file() with an older token is refused");
  c.expect(ix.count(1) == 1, "a refused remove_file() removes nothing");
  ix.index(std::vector<search_document>{{"c", 1, "gamma"}}, f5);
  c.expect(ix.count() == 2, "the scope's current token is accepted again");
  ix.index(std::vector<search_document>{{"d", 2, "delta"}});
  c.expect(ix.count() == 3, "an unfenced batch (token 0) is accepted after fenced ones");
  ix.index(std::vector<search_document>{{"e", 3, "epsilon"}}, fence{"file:3", 1});
  c.expect(ix.count() == 4, "scopes are independent: a low token on another scope is accepted");
  c.expect(ix.remove_file(1, f7) == 2, "a newer token is accepted");
  c.expect_error(errc::lease_lost, [&] { ix.index(std::vector<search_document>{{"f", 1, "late"}}, f5); },
                 "once a newer token wrote, the previous holder is refused");
  c.expect_error(errc::invalid_argument, [&] { ix.index(std::vector<search_document>{{"g", 1, "x"}}, fence{"file:1", -1}); }, "a negative token is refused");
  c.expect_error(errc::invalid_argument, [&] { ix.remove_file(2, fence{"", 9}); }, "a fenced write needs a scope");
  c.expect_error(errc::invalid_argument, [&] { ix.index(std::vector<search_document>{{"g", 1, "x"}}, fence{std::string(201, 's'), 9}); },
                 "a scope over 200 characters is refused");
  c.expect(ix.count() == 2 && ix.query("late").empty(), "refused and malformed fenced writes change nothing");
}

void search_fencing_race(const checker& c, search_index& ix) {
  // Writers holding tokens 1..N of one scope race to index their version of one document: once the
  // newest holder has indexed, nobody older can, so its version is the one that stays.
  constexpr int writers = 8;
  for (int round = 0; round < 3; ++round) {
    const auto scope = "race-" + std::to_string(round);
    std::atomic<int> other{0};
    race(writers, [&](std::size_t i) {
      const auto token = static_cast<std::int64_t>(i) + 1;
      try {
        ix.index(std::vector<search_document>{{scope, 50 + round, "round" + std::to_string(round) + "holder" + std::to_string(token)}}, fence{scope, token});
      } catch (const error& e) {
        if (e.code() != errc::lease_lost) ++other;
      }
    });
    c.expect(other == 0, "racing fenced writers fail only with lease_lost");
    c.expect(ix.query("round" + std::to_string(round) + "holder" + std::to_string(writers)) == std::vector<std::string>{scope},
             "of writers racing with increasing tokens, the newest one's document stays");
  }
}

// ---- task transport --------------------------------------------------------------------------

void transport_basics(const checker& c, task_transport& tt) {
  auto sub = tt.subscribe("jobs.ready");
  c.expect(!sub->wait(20ms), "wait() without a notify times out and returns false");
  tt.notify("jobs.ready");
  c.expect(sub->wait(0ms), "a notify after subscribe() is not lost: the next wait() returns true");
  tt.notify("jobs.ready");
  tt.notify("jobs.ready");
  c.expect(sub->wait(0ms), "several notifies wake a waiter");
  c.expect(!sub->wait(10ms), "several notifies before one wait() coalesce into one wake-up");
  tt.notify("other.topic");
  c.expect(!sub->wait(10ms), "a notify on another topic does not wake a subscriber");
  std::vector<std::unique_ptr<task_subscription>> subs;
  for (int i = 0; i < 8; ++i) subs.push_back(tt.subscribe("fan.out"));
  tt.notify("fan.out");
  for (auto& s : subs) c.expect(s->wait(0ms), "one notify wakes every subscriber of the topic");
  auto late = tt.subscribe("fan.out");
  c.expect(!late->wait(10ms), "a subscription does not see notifies from before it was made");
}

void transport_bad_input(const checker& c, task_transport& tt) {
  c.expect_error(errc::invalid_argument, [&] { tt.notify(""); }, "an empty topic is refused");
  c.expect_error(errc::invalid_argument, [&] { tt.subscribe(std::string(201, 't')); }, "a topic over 200 characters is refused");
  c.expect_error(errc::invalid_argument, [&] { tt.notify("bad topic"); }, "a topic with spaces is refused");
  auto sub = tt.subscribe("t");
  c.expect_error(errc::invalid_argument, [&] { sub->wait(std::chrono::milliseconds(-1)); }, "a negative timeout is refused");
}

void transport_threads(const checker& c, task_transport& tt) {
  // Ping-pong: each round a waiter subscribes, checks (nothing to do), waits; the producer notifies
  // after the subscription exists. A lost wake-up shows up as a 30 s timeout and a failure.
  constexpr int rounds = 40;
  std::atomic<int> lost{0};
  for (int r = 0; r < rounds; ++r) {
    std::atomic<bool> subscribed{false};
    std::thread waiter([&] {
      auto sub = tt.subscribe("ping");
      subscribed = true;
      if (!sub->wait(30s)) ++lost;
    });
    while (!subscribed) std::this_thread::yield();
    tt.notify("ping");
    waiter.join();
  }
  c.expect(lost == 0, "a notify from another thread after subscribe() always wakes the waiter");
  // Many producers, many waiters on distinct topics: each waiter is woken by its own producer.
  std::atomic<int> woken{0};
  std::atomic<int> ready{0};
  race(16, [&](std::size_t i) {
    const auto topic = "topic-" + std::to_string(i / 2);
    if (i % 2 == 0) {
      auto sub = tt.subscribe(topic);
      ++ready;
      if (sub->wait(30s)) ++woken;
    } else {
      while (ready < 8) std::this_thread::yield();
      tt.notify(topic);
    }
  });
  c.expect(woken == 8, "concurrent producers wake every waiter of their topic");
}

} // namespace

void check_blob_store(const blob_store_factory& make) {
  const checker c{"blob_store"};
  blob_basics(c, *make());
  blob_writers(c, *make());
  blob_bad_keys(c, *make());
  blob_concurrency(c, *make());
  blob_readers(c, *make());
  blob_fencing(c, *make());
  blob_fencing_race(c, *make());
}

void check_search_index(const search_index_factory& make) {
  const checker c{"search_index"};
  search_basics(c, *make());
  search_bad_input(c, *make());
  search_concurrency(c, *make());
  search_fencing(c, *make());
  search_fencing_race(c, *make());
}

void check_task_transport(const task_transport_factory& make) {
  const checker c{"task_transport"};
  transport_basics(c, *make());
  transport_bad_input(c, *make());
  transport_threads(c, *make());
}

} // namespace casecore::testing
