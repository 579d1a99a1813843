// The PostgreSQL ports (LISTEN/NOTIFY transport, search index, chunked blob store): the same
// conformance suites as the embedded ports, their failure modes (listener killed, pooler declared,
// abandoned uploads, corrupted chunks), and two "hosts" — child processes with their own working
// directories that share nothing but PostgreSQL — registering, searching and waking each other.
// The PostgreSQL ports run only on the postgres backend; the sqlite run says so and skips them.
#include <casecore/detail/token.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/postgres/blob_store.hpp>
#include <casecore/postgres/notify_transport.hpp>
#include <casecore/postgres/search_index.hpp>
#include <casecore/testing/conformance.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <mutex>
#include <thread>
#include <unistd.h>

using namespace casecore;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace pg = casecore::postgres;
using casecore::testing::backend_kind;
using casecore::testing::scratch_database;

namespace {

bool on_postgres() { return casecore::testing::selected_backend() == backend_kind::postgres; }

#define CASECORE_PG_PORTS_ONLY()                                                                                      \
  if (!on_postgres()) {                                                                                               \
    MESSAGE("skipped: the PostgreSQL ports need a PostgreSQL server; this is the sqlite run (the postgres run covers it)"); \
    return;                                                                                                           \
  }

std::string fresh(const char* prefix) { return prefix + detail::random_token().substr(0, 12); }

// LISTEN needs a session of its own, which a transaction pooler cannot give: behind one, a
// deployment hands the transport the server's direct address (docs/deploying-on-many-hosts.md), and
// so do the tests that need a listening transport when scripts/test.sh reruns the suite through
// PgBouncer (CASECORE_TEST_PG_DIRECT_URL); the database handles still go through the pooler.
std::string server_listen_url(const std::string& url) {
  const char* direct = std::getenv("CASECORE_TEST_PG_DIRECT_URL");
  return direct && *direct ? std::string(direct) : url;
}

pg::notify_transport_options listening_on(const std::string& url, const std::string& channel) {
  pg::notify_transport_options o;
  o.listen_url = url;
  o.channel = channel;
  o.on_event = [](std::string_view) {}; // keep test output clean; tests read stats() instead
  return o;
}

// Waits until `pred` holds or `limit` passes.
template <class P> bool eventually(P pred, std::chrono::milliseconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::int64_t count_rows(database& db, const std::string& sql) {
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>(sql); });
}

} // namespace

// ---- conformance -------------------------------------------------------------------------------

TEST_CASE("conformance: PostgreSQL search index") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  CHECK_NOTHROW(casecore::testing::check_search_index([&] {
    pg::search_index_options o;
    o.name = fresh("ix-");
    return pg::make_search_index(db, o);
  }));
}

TEST_CASE("conformance: PostgreSQL blob store, 1 MiB and 64 KiB chunks") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  for (std::size_t chunk : {std::size_t{1} << 20, std::size_t{64} << 10}) {
    CAPTURE(chunk);
    CHECK_NOTHROW(casecore::testing::check_blob_store([&] {
      pg::blob_store_options o;
      o.name = fresh("bs-");
      o.chunk_size = chunk;
      return pg::make_blob_store(db, o);
    }));
  }
}

TEST_CASE("conformance: PostgreSQL LISTEN/NOTIFY transport") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  CHECK_NOTHROW(casecore::testing::check_task_transport([&] { return std::make_unique<pg::notify_transport>(db, listening_on(server_listen_url(s.url()), fresh("ch_"))); }));
}

// ---- transport ---------------------------------------------------------------------------------

TEST_CASE("notify(tx) of the in-process transport wakes subscribers only once the transaction commits") {
  scratch_database s; // both backends: the port's default hook
  auto db = s.open();
  auto t = make_inprocess_task_transport();
  auto sub = t->subscribe("work");
  CHECK_THROWS_AS(db.write([&](transaction& tx) {
    t->notify(tx, "work");
    throw std::runtime_error("roll back");
  }),
                  std::runtime_error);
  CHECK_FALSE(sub->wait(0ms));
  db.write([&](transaction& tx) {
    t->notify(tx, "work");
    CHECK_FALSE(sub->wait(0ms)); // not before COMMIT
  });
  CHECK(sub->wait(0ms));
  CHECK_THROWS_AS(db.write([&](transaction& tx) { t->notify(tx, "bad topic"); }), invalid_argument);
}

TEST_CASE("a NOTIFY in a transaction reaches another host's transport on commit and never on rollback") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db_a = s.open();
  auto db_b = s.open();
  const auto channel = fresh("ch_");
  auto a = pg::make_notify_transport(db_a, listening_on(server_listen_url(s.url()), channel));
  auto b = pg::make_notify_transport(db_b, listening_on(server_listen_url(s.url()), channel));
  REQUIRE(a->wait_listening(10s));
  REQUIRE(b->wait_listening(10s));
  auto rolled = b->subscribe("rolled");
  auto marker = b->subscribe("marker");
  CHECK_THROWS_AS(db_a.write([&](transaction& tx) {
    a->notify(tx, "rolled");
    throw std::runtime_error("roll back");
  }),
                  std::runtime_error);
  // PostgreSQL delivers one sender's notifications in commit order: once "marker" (committed after
  // the rollback) has arrived, a "rolled" notification would have arrived before it.
  db_a.write([&](transaction& tx) { a->notify(tx, "marker"); });
  CHECK(marker->wait(30s));
  CHECK_FALSE(rolled->wait(0ms));
  db_a.write([&](transaction& tx) { a->notify(tx, "rolled"); });
  CHECK(rolled->wait(30s));
  CHECK(b->stats().received == 2);
  CHECK(a->stats().sent == 2);
  CHECK(a->stats().received == 0); // its own echoes are not counted twice
}

TEST_CASE("the listener reconnects and LISTENs again after pg_terminate_backend; no wake-up is lost") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  const auto channel = fresh("ch_");
  std::mutex m;
  std::vector<std::string> events;
  auto bo = listening_on(server_listen_url(s.url()), channel);
  bo.on_event = [&](std::string_view line) {
    std::lock_guard g(m);
    events.emplace_back(line);
  };
  auto a = pg::make_notify_transport(s.open(), listening_on(server_listen_url(s.url()), channel));
  auto b = pg::make_notify_transport(s.open(), bo);
  REQUIRE(b->wait_listening(10s));
  const int first_pid = b->stats().listener_pid;
  REQUIRE(first_pid > 0);
  auto sub = b->subscribe("jobs");

  // Kill the listening backend, then notify at once (possibly before the new LISTEN): the waiter
  // is woken by the notification or, if PostgreSQL dropped it, by the resync after the re-LISTEN.
  CHECK(db.read([&](transaction& tx) { return tx.query_one<bool>("SELECT pg_terminate_backend($1)", first_pid); }));
  a->notify("jobs");
  CHECK(sub->wait(30s));

  REQUIRE(eventually([&] { return b->stats().connects >= 2 && b->stats().listening; }));
  const auto st = b->stats();
  CHECK(st.drops == 1);
  CHECK(st.listener_pid != first_pid);
  CHECK(db.read([&](transaction& tx) {
    return tx.query_one<bool>("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query ILIKE 'LISTEN%')", st.listener_pid);
  }));
  // A subscription made after the reconnect is woken by a real notification: the new connection LISTENs.
  auto later = b->subscribe("later");
  const auto received = b->stats().received;
  a->notify("later");
  CHECK(later->wait(30s));
  CHECK(b->stats().received == received + 1);
  std::lock_guard g(m);
  CHECK(std::any_of(events.begin(), events.end(), [](const std::string& e) { return e.find("listening connection lost") != std::string::npos; }));
}

TEST_CASE("behind a declared transaction pooler, or without a listen URL, the transport polls and says why") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  std::vector<std::string> events;
  // A password in the URL must not reach the log line (the pooler URL is never connected to).
  auto pooled = s.url() + (s.url().find('?') == std::string::npos ? "?" : "&") + "pooler=transaction";
  pooled.replace(pooled.find("@"), 1, ":s3cret-pw@");
  auto o = listening_on(pooled, fresh("ch_"));
  o.on_event = [&](std::string_view line) { events.emplace_back(line); };
  auto t = pg::make_notify_transport(db, o);
  const auto st = t->stats();
  CHECK_FALSE(st.listening);
  CHECK(st.mode.starts_with("polling"));
  REQUIRE(events.size() == 1);
  CHECK(events[0].find("pooler=transaction") != std::string::npos);
  CHECK(events[0].find("direct URL") != std::string::npos);
  CHECK(events[0].find("s3cret-pw") == std::string::npos);
  CHECK(events[0].find("***") != std::string::npos);
  metrics::sample_sink sink;
  t->collect(sink);
  bool polling_reported = false;
  for (const auto& f : sink.take())
    if (f.name == "casecore_notify_polling_mode") polling_reported = !f.samples.empty() && f.samples[0].value == 1;
  CHECK(polling_reported);
  // Still a working transport inside this process (notify wakes local subscribers; NOTIFY is sent).
  auto sub = t->subscribe("x");
  t->notify("x");
  CHECK(sub->wait(0ms));

  auto none = pg::make_notify_transport(db, listening_on("", fresh("ch_")));
  CHECK(none->stats().mode == "polling: no listen_url");

  CHECK_THROWS_AS(pg::make_notify_transport(db, listening_on(s.url(), "Bad-Channel")), invalid_argument);
  CHECK_THROWS_AS(pg::make_notify_transport(db, listening_on("postgresql://[broken", "ok")), casecore::bad_url);
}

TEST_CASE("a listen URL that goes through an undeclared pooler is detected: the transport polls and says why") {
  CASECORE_PG_PORTS_ONLY();
  const char* bouncer = std::getenv("CASECORE_TEST_PGBOUNCER_URL");
  if (!bouncer || !*bouncer) {
    MESSAGE("skipped: CASECORE_TEST_PGBOUNCER_URL is not set (scripts/test.sh starts a PgBouncer)");
    return;
  }
  scratch_database s;
  std::vector<std::string> events;
  std::mutex m;
  auto o = listening_on(bouncer, fresh("ch_"));
  o.on_event = [&](std::string_view line) {
    std::lock_guard g(m);
    events.emplace_back(line);
  };
  auto t = pg::make_notify_transport(s.open(), o);
  CHECK(eventually([&] { return t->stats().mode.find("detected") != std::string::npos; }));
  CHECK_FALSE(t->stats().listening);
  std::lock_guard g(m);
  CHECK(std::any_of(events.begin(), events.end(), [](const std::string& e) { return e.find("through a pooler") != std::string::npos; }));
}

TEST_CASE("a listener whose server is unreachable keeps retrying without failing the host") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  std::vector<std::string> events;
  std::mutex m;
  auto o = listening_on("postgresql://nobody@127.0.0.1:1/none", fresh("ch_"));
  o.startup_wait = 200ms;
  o.reconnect_min = 20ms;
  o.reconnect_max = 50ms;
  o.on_event = [&](std::string_view line) {
    std::lock_guard g(m);
    events.emplace_back(line);
  };
  auto t = pg::make_notify_transport(s.open(), o);
  CHECK(eventually([&] { return t->stats().connect_failures >= 3; }));
  CHECK_FALSE(t->stats().listening);
  std::lock_guard g(m);
  // One line for the failure streak, one for the slow start — not one per attempt.
  CHECK(std::count_if(events.begin(), events.end(), [](const std::string& e) { return e.find("cannot LISTEN") != std::string::npos; }) == 1);
}

// ---- search index ------------------------------------------------------------------------------

TEST_CASE("the PostgreSQL index answers exactly like the reference where PostgreSQL's own parser would not") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto ix = pg::make_search_index(s.open());
  auto ref = make_memory_search_index();
  const std::string long_word(3000, 'x');
  const std::vector<search_document> docs{
      {"d01", 1, "quick-witted foo_bar 3.14 a@b.com http://host.example/path"},
      {"d02", 1, "MÜNCHEN Straße"},
      {"d03", 1, "münchen strasse"},
      {"d04", 1, "the and of running runs ran"},
      {"d05", 1, long_word + " tail"},
      {"d06", 1, std::string("bytes \xff\xfe here \xc3")},
      {"d07", 1, "Ünïcödé ünïcödé"},
      {"d08", 1, "x" + long_word}};
  ix->index(docs);
  ref->index(docs);
  for (const char* q : {"quick", "witted", "foo", "bar", "3", "14", "com", "host", "example", "path", "münchen", "MÜNCHEN", "mÜnchen",
                        "straße", "strasse", "the", "and", "of", "run", "running", "ran", "tail", "\xff\xfe", "\xc3", "ünïcödé",
                        "Ünïcödé", "x"}) {
    CAPTURE(q);
    CHECK(ix->query(q) == ref->query(q));
  }
  CHECK(ix->query(long_word) == ref->query(long_word));
  CHECK(ix->query(long_word) == std::vector<std::string>{"d05"});
  CHECK(ix->query("x" + long_word) == std::vector<std::string>{"d08"});
}

TEST_CASE("the PostgreSQL index refuses ids it cannot store faithfully, writing nothing") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto ix = pg::make_search_index(s.open());
  CHECK_THROWS_AS(ix->index(std::vector<search_document>{{"ok", 1, "a"}, {std::string("nul\0id", 6), 1, "b"}}), invalid_argument);
  CHECK_THROWS_AS(ix->index(std::vector<search_document>{{"ok", 1, "a"}, {"bad\xff", 1, "b"}}), invalid_argument);
  CHECK(ix->count() == 0);
  CHECK_THROWS_AS(pg::make_search_index(s.open(), pg::search_index_options{""}), invalid_argument);
  scratch_database lite(backend_kind::sqlite);
  CHECK_THROWS_AS(pg::make_search_index(lite.open()), invalid_argument);
}

// ---- blob store --------------------------------------------------------------------------------

TEST_CASE("the PostgreSQL blob store streams in chunks and verifies each chunk's hash") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  pg::blob_store_options o;
  o.chunk_size = 4096;
  auto store = pg::make_blob_store(db, o);
  std::string content;
  for (int i = 0; i < 100 * 1024; ++i) content.push_back(static_cast<char>((i * 7) ^ (i >> 8)));
  {
    auto w = store->open_writer();
    for (std::size_t off = 0; off < content.size(); off += 999) w->write(bytes_of(content.substr(off, 999)));
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 1); // full chunks already out
    CHECK(w->commit("streamed"));
  }
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == (100 * 1024 + 4095) / 4096);
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 0);
  CHECK(store->get("streamed") == content);
  {
    const auto chunks = count_rows(db, "SELECT count(*) FROM casecore_blob_chunks");
    auto w = store->open_writer();
    w->write(bytes_of(content)); // 25 chunks uploaded before the commit is refused
    CHECK(store->put("fenced", "newer holder", fence{"file:9", 8}));
    CHECK_THROWS_AS(w->commit("stale", fence{"file:9", 7}), lease_lost);
    CHECK_FALSE(store->exists("stale"));
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 0); // the refused upload is gone
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == chunks + 1);
  }
  CHECK(store->remove("fenced"));

  SUBCASE("a reader of a blob removed meanwhile fails with not_found") {
    auto r = store->open_reader("streamed");
    std::vector<std::byte> buf(4096);
    CHECK(r->read(buf) == 4096);
    CHECK(store->remove("streamed"));
    CHECK_THROWS_AS(r->read(buf), not_found);
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == 0);
  }
  SUBCASE("a corrupted chunk is detected by get() and by readers") {
    db.write([](transaction& tx) { tx.exec("UPDATE casecore_blob_chunks SET data = data || '\\x00'::bytea WHERE seq = 3"); });
    CHECK_THROWS_WITH_AS(store->get("streamed"), doctest::Contains("SHA-256"), casecore::error);
    auto r = store->open_reader("streamed");
    std::vector<std::byte> buf(8192);
    CHECK_THROWS_WITH_AS(while (r->read(buf) > 0){}, doctest::Contains("SHA-256"), casecore::error);
  }
}

CASECORE_CHILD(pg_blob_abandon) {
  pg::blob_store_options o;
  o.chunk_size = 4096;
  auto store = pg::make_blob_store(casecore::open(args.at(0)), o);
  auto w = store->open_writer();
  w->write(bytes_of(std::string(3 * 4096 + 10, 'z')));
  std::_Exit(0); // a crash: no commit, no abort, no destructor
}

TEST_CASE("an upload abandoned by a crashed writer is swept by the next writer once it is stale") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  pg::make_blob_store(db); // tables first
  CHECK(casecore::testing::child_process("pg_blob_abandon", {s.url()}).wait().exit_code == 0);
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 1);
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == 3);
  std::this_thread::sleep_for(50ms);
  pg::blob_store_options o;
  o.chunk_size = 4096;
  o.stale_upload_after = 20ms;
  auto store = pg::make_blob_store(db, o);
  {
    auto w = store->open_writer();
    w->write(bytes_of(std::string(5000, 'y'))); // starts an upload: sweeps the stale one
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 1);
    CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == 1);
    CHECK(w->commit("after-sweep"));
  }
  CHECK(store->get("after-sweep") == std::string(5000, 'y'));

  // A writer that stalls past stale_upload_after loses its upload; its commit says so, publishes nothing.
  auto slow = store->open_writer();
  slow->write(bytes_of(std::string(5000, 's')));
  std::this_thread::sleep_for(50ms);
  {
    auto other = store->open_writer();
    other->write(bytes_of(std::string(5000, 'o')));
  }
  CHECK_THROWS_WITH_AS(slow->commit("slow"), doctest::Contains("swept"), casecore::error);
  CHECK_FALSE(store->exists("slow"));
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 0);
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == 2); // after-sweep's two chunks
}

CASECORE_CHILD(pg_blob_put) {
  pg::blob_store_options o;
  o.name = "shared";
  o.chunk_size = 4096;
  auto store = pg::make_blob_store(casecore::open(args.at(0)), o);
  int created = 0;
  for (int k = 0; k < 12; ++k)
    if (store->put("shared-" + std::to_string(k), std::string(10000 + k, static_cast<char>('a' + k)))) ++created;
  std::printf("%d\n", created);
  return 0;
}

TEST_CASE("processes committing the same keys into the PostgreSQL store create each once and leave no stray chunk") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  pg::blob_store_options o;
  o.name = "shared";
  o.chunk_size = 4096;
  auto store = pg::make_blob_store(db, o);
  int created = 0;
  for (const auto& r : casecore::testing::run_children("pg_blob_put", 4, {s.url()})) {
    CHECK(r.exit_code == 0);
    created += std::atoi(r.output.c_str());
  }
  CHECK(created == 12);
  CHECK(store->list().size() == 12);
  CHECK(store->get("shared-5") == std::string(10005, 'f'));
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_chunks") == 12 * 3); // 10000..10011 bytes = 3 chunks each
  CHECK(count_rows(db, "SELECT count(*) FROM casecore_blob_uploads") == 0);
}

// ---- two hosts ---------------------------------------------------------------------------------

namespace {

void signal(database& db, const std::string& name) {
  db.write([&](transaction& tx) { tx.exec("INSERT INTO host_signals(name) VALUES($1) ON CONFLICT DO NOTHING", name); });
}

bool await_signal(database& db, const std::string& name) {
  return eventually([&] { return db.read([&](transaction& tx) { return tx.query_one<bool>("SELECT EXISTS (SELECT 1 FROM host_signals WHERE name = $1)", name); }); }, 60s);
}

std::string own_text(const std::string& role) { return "report written on host " + role + ": markerhost" + role + " and more"; }
const std::string common_text = "common evidence both hosts hold: commonword";

} // namespace

// One host: its own working directory, its own connections, nothing shared but the PostgreSQL URL.
// Phase 1: b's worker waits (poll 60 s), a enqueues; phase 2 the other way round.
CASECORE_CHILD(ports_host) {
  const std::string role = args.at(0), url = args.at(1), channel = args.at(2), dir = args.at(3);
  const std::string peer = role == "a" ? "b" : "a";
  fs::create_directories(dir);
  fs::current_path(dir);
  auto db = casecore::open(url);
  auto store = pg::make_blob_store(db, {"shared"});
  auto index = pg::make_search_index(db, {"shared"});
  file_registry files(db, *store);
  std::ofstream("own.txt") << own_text(role);
  std::ofstream("common.txt") << common_text;
  const auto own = files.register_path("case-1", "own.txt", "own-" + role + ".txt", "host-" + role);
  const auto common = files.register_path("case-1", "common.txt", "common.txt", "host-" + role);
  const auto own_doc = event_id(own.id, "page-1");
  index->index(std::vector<search_document>{{own_doc, own.id, own_text(role)}, {event_id(common.id, "page-1"), common.id, common_text}},
               fence{"file:" + std::to_string(own.id), 1});
  signal(db, "indexed-" + role);
  if (!await_signal(db, "indexed-" + peer)) return 10;

  auto transport = pg::make_notify_transport(db, listening_on(server_listen_url(url), channel));
  if (!transport->wait_listening(10s)) return 11;

  auto consume = [&]() -> int {
    jobs::worker_options wo;
    wo.threads = 1;
    wo.poll = 60s; // only a notification can start the job within the test's bounds
    wo.transport = transport;
    jobs::worker w(db, wo);
    std::atomic<bool> ran{false};
    w.on_stage("visit-" + role, "run", [&](jobs::job_context& ctx) {
      std::istringstream in(ctx.current().payload);
      std::int64_t enqueued_us = 0;
      std::string blob_key, doc_id;
      in >> enqueued_us >> blob_key >> doc_id;
      const auto hits = index->query("markerhost" + peer);
      const bool found = std::find(hits.begin(), hits.end(), doc_id) != hits.end();
      const bool blob_ok = store->get(blob_key) == own_text(peer);
      const bool common_once = index->query("commonword").size() == 1;
      ctx.complete([&](transaction& tx) {
        tx.exec("INSERT INTO host_visits(consumer, enqueued_us, started_us, found_doc, blob_ok, common_once) VALUES($1, $2, $3, $4, $5, $6)",
                role, enqueued_us, tx.now_us(), found, blob_ok, common_once);
      });
      ran = true;
    });
    w.start();
    std::this_thread::sleep_for(1s); // its first claim found nothing: it now sleeps up to 60 s
    signal(db, "waiting-" + role);
    const bool done = eventually([&] { return ran.load(); }, 45s);
    w.stop();
    signal(db, "visited-" + role);
    return done ? 0 : 12;
  };
  auto produce = [&]() -> int {
    if (!await_signal(db, "waiting-" + peer)) return 13;
    db.write([&](transaction& tx) {
      jobs::job_spec spec;
      spec.operation = "visit-" + peer;
      spec.subject = "host:" + peer;
      spec.payload = std::to_string(tx.now_us()) + " " + own.sha256 + " " + own_doc;
      jobs::enqueue(tx, spec);
      transport->notify(tx, "casecore.jobs"); // delivered when this transaction commits
    });
    return await_signal(db, "visited-" + peer) ? 0 : 14;
  };
  int rc = role == "b" ? consume() : produce();
  if (rc == 0) rc = role == "b" ? produce() : consume();
  std::printf("received=%llu\n", static_cast<unsigned long long>(transport->stats().received));
  return rc;
}

TEST_CASE("two hosts sharing only PostgreSQL register and search the same files and wake each other's workers") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open_migrated();
  db.write([](transaction& tx) {
    tx.exec_script("CREATE TABLE host_signals (name text PRIMARY KEY);"
                   "CREATE TABLE host_visits (consumer text PRIMARY KEY, enqueued_us bigint, started_us bigint, found_doc boolean,"
                   " blob_ok boolean, common_once boolean);");
  });
  const auto channel = fresh("ch_");
  const auto root = casecore::testing::temp_root() / fresh("casecore-hosts-");
  casecore::testing::child_process a("ports_host", {"a", s.url(), channel, (root / "host-a").string()});
  casecore::testing::child_process b("ports_host", {"b", s.url(), channel, (root / "host-b").string()});
  const auto ra = a.wait();
  const auto rb = b.wait();
  std::error_code ec;
  fs::remove_all(root, ec);
  INFO("host a: " << ra.output << " host b: " << rb.output);
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  // Each host's worker was woken by the other's NOTIFY: it received notifications and started the
  // job long before its 60 s poll would have.
  CHECK(ra.output.find("received=0") == std::string::npos);
  CHECK(rb.output.find("received=0") == std::string::npos);
  const auto visits = db.read([](transaction& tx) {
    return tx.exec("SELECT consumer, started_us - enqueued_us, found_doc, blob_ok, common_once FROM host_visits ORDER BY consumer");
  });
  REQUIRE(visits.size() == 2);
  for (auto row : visits) {
    CAPTURE(row.get<std::string>(0));
    MESSAGE("host " << row.get<std::string>(0) << " started the other host's job " << row.get<std::int64_t>(1) / 1000 << " ms after it was enqueued");
    CHECK(row.get<std::int64_t>(1) < 30'000'000); // far below the 60 s poll: woken by the notification
    CHECK(row.get<bool>(2));                      // found the other host's document
    CHECK(row.get<bool>(3));                      // read the other host's blob
    CHECK(row.get<bool>(4));                      // the file both hold is indexed once
  }
  // Registered once each: two own files and the common one (registered by whichever host came first).
  file_registry files(db, *pg::make_blob_store(db, {"shared"}));
  CHECK(files.files_of_case("case-1").size() == 3);
  CHECK(pg::make_search_index(db, {"shared"})->count() == 3);
}

TEST_CASE("the notify transport refuses bad channels, delays, non-PostgreSQL URLs and databases, writing and sending nothing") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  for (const std::string& bad : {std::string(), std::string(64, 'c'), std::string("1abc"), std::string("a-b"), std::string("ab c")}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(pg::make_notify_transport(db, listening_on("", bad)), invalid_argument);
  }
  CHECK_NOTHROW(pg::make_notify_transport(db, listening_on("", std::string(63, 'c'))));
  auto o = listening_on("", "ok_channel");
  o.reconnect_min = 0ms;
  CHECK_THROWS_AS(pg::make_notify_transport(db, o), invalid_argument);
  o = listening_on("", "ok_channel");
  o.reconnect_max = o.reconnect_min - 1ms;
  CHECK_THROWS_AS(pg::make_notify_transport(db, o), invalid_argument);
  o = listening_on("", "ok_channel");
  o.startup_wait = -1ms;
  CHECK_THROWS_AS(pg::make_notify_transport(db, o), invalid_argument);
  CHECK_THROWS_AS(pg::make_notify_transport(db, listening_on("sqlite:x.db", "ok_channel")), casecore::bad_url);
  CHECK_FALSE(fs::exists("x.db"));

  // A PostgreSQL transport on a SQLite database, or asked to notify inside a SQLite transaction.
  const auto folder = casecore::testing::temp_root() / fresh("casecore-notify-");
  fs::create_directories(folder);
  {
    auto lite = casecore::open("sqlite://" + (folder / "t.db").string());
    CHECK_THROWS_AS(pg::make_notify_transport(lite, listening_on("", "ok_channel")), invalid_argument);
    auto t = pg::make_notify_transport(db, listening_on("", "ok_channel"));
    CHECK_THROWS_AS(lite.write([&](transaction& tx) { t->notify(tx, "topic"); }), invalid_argument);
    CHECK(t->stats().sent == 0);
  }
  fs::remove_all(folder);
}

TEST_CASE("the PostgreSQL blob store refuses bad names, chunk sizes, stale ages and non-PostgreSQL databases") {
  CASECORE_PG_PORTS_ONLY();
  scratch_database s;
  auto db = s.open();
  using opts = pg::blob_store_options;
  const std::vector<std::pair<const char*, std::function<void(opts&)>>> bad = {
      {"empty name", [](opts& o) { o.name.clear(); }},
      {"long name", [](opts& o) { o.name = std::string(101, 'n'); }},
      {"control character", [](opts& o) { o.name = "a\tb"; }},
      {"small chunks", [](opts& o) { o.chunk_size = 4095; }},
      {"huge chunks", [](opts& o) { o.chunk_size = (std::size_t{64} << 20) + 1; }},
      {"stale age 0", [](opts& o) { o.stale_upload_after = 0ms; }},
  };
  for (const auto& [what, change] : bad) {
    CAPTURE(std::string(what));
    opts o;
    change(o);
    CHECK_THROWS_AS(pg::make_blob_store(db, o), invalid_argument);
  }
  opts edge;
  edge.name = std::string(100, 'n');
  edge.chunk_size = 4096;
  auto store = pg::make_blob_store(db, edge);
  CHECK(store->put("k", std::string(10000, 'x')));
  CHECK(store->get("k") == std::string(10000, 'x'));
  const auto folder = casecore::testing::temp_root() / fresh("casecore-pgblob-");
  fs::create_directories(folder);
  {
    auto lite = casecore::open("sqlite://" + (folder / "t.db").string());
    CHECK_THROWS_AS(pg::make_blob_store(lite), invalid_argument);
  }
  fs::remove_all(folder);
}
