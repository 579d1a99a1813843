// `casecore serve` over HTTP (cpp-httplib's client against the built CLI on a free 127.0.0.1 port):
// start-up refusals, escaping of hostile database values, security headers, the operator token and
// CSRF checks on every POST (a refused POST writes nothing), read-only mode, Host checks, /metrics.
// Both backends. The real-browser test is tests/browser/ (ctest serve_browser_test.*).
#ifdef CASECORE_CLI_PATH

#include "serve_process.hpp"
#include "serve_seed.hpp"

#include <casecore/job_queue_admin.hpp>
#include <casecore/schedule.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/url.hpp>
#include <casecore/worker.hpp>
#include <doctest/doctest.h>

#include <httplib.h>

#include <sys/stat.h>

#include <chrono>
#include <thread>

using namespace casecore;
using casecore::testing::scratch_database;
using casecore::testing::serve_process;

namespace {

const std::string token = "0123456789abcdef0123456789abcdef";

httplib::Client client(const serve_process& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_connection_timeout(10);
  c.set_read_timeout(60);
  return c;
}

/// A logged-in session: the cookie and the CSRF token of job `id`'s page.
struct session {
  std::string cookie;
  std::string csrf;
};

session log_in(httplib::Client& c, std::int64_t id) {
  const auto r = c.Post("/login", httplib::Params{{"token", token}});
  REQUIRE(r);
  REQUIRE(r->status == 303);
  const auto set = r->get_header_value("Set-Cookie");
  CHECK(set.find("HttpOnly") != std::string::npos);
  CHECK(set.find("SameSite=Strict") != std::string::npos);
  session s;
  s.cookie = set.substr(0, set.find(';'));
  const auto page = c.Get("/jobs/" + std::to_string(id), httplib::Headers{{"Cookie", s.cookie}});
  REQUIRE(page);
  const std::string marker = "name=\"csrf\" value=\"";
  const auto at = page->body.find(marker);
  REQUIRE(at != std::string::npos);
  s.csrf = page->body.substr(at + marker.size(), 64);
  return s;
}

/// What a job looks like to an operator (a refused POST must leave all of it as it was).
std::string fingerprint(database& db, std::int64_t id) {
  const auto j = jobs::get(db, id);
  REQUIRE(j);
  return std::string(jobs::to_string(j->state)) + "|" + std::to_string(j->attempts) + "|" + std::to_string(j->cancel_requested) + "|" +
         std::to_string(j->run_at) + "|" + j->last_error;
}

} // namespace

TEST_CASE("serve: refuses to start with actions enabled and no usable operator token") {
  scratch_database s;
  s.open_migrated();
  const auto dir = s.folder();
  {
    serve_process none(CASECORE_CLI_PATH, s.url(), {}, {}, dir);
    REQUIRE(none.exited());
    CHECK(*none.exited() == 2);
    CHECK(none.err().find("operator token") != std::string::npos);
  }
  {
    serve_process short_token(CASECORE_CLI_PATH, s.url(), {}, {"CASECORE_OPERATOR_TOKEN=short"}, dir);
    REQUIRE(short_token.exited());
    CHECK(*short_token.exited() == 2);
  }
  {
    const auto file = dir / "token";
    std::ofstream(file) << token << "\n";
    ::chmod(file.c_str(), 0644);
    serve_process readable(CASECORE_CLI_PATH, s.url(), {"--token-file", file.string()}, {}, dir);
    REQUIRE(readable.exited());
    CHECK(*readable.exited() == 2);
    CHECK(readable.err().find("chmod 600") != std::string::npos);
    ::chmod(file.c_str(), 0600);
    serve_process from_file(CASECORE_CLI_PATH, s.url(), {"--token-file", file.string()}, {}, dir);
    REQUIRE_FALSE(from_file.exited());
    auto c = client(from_file);
    CHECK(c.Post("/login", httplib::Params{{"token", token}})->status == 303);
    CHECK(from_file.stop() == 0);
  }
  // --read-only needs no token.
  serve_process ro(CASECORE_CLI_PATH, s.url(), {"--read-only"}, {}, dir);
  REQUIRE_FALSE(ro.exited());
  CHECK(ro.port() > 0);
  CHECK(ro.stop() == 0);
}

TEST_CASE("serve: database values are escaped on every page, with security headers") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto ids = testing::seed_dashboard(db);
  serve_process server(CASECORE_CLI_PATH, s.url(), {}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  REQUIRE(server.port() > 0);
  auto c = client(server);
  const auto sess = log_in(c, ids.hostile);
  const httplib::Headers cookie{{"Cookie", sess.cookie}};

  const std::vector<std::string> paths{"/", "/jobs?limit=100", "/jobs?state=failed", "/jobs/" + std::to_string(ids.hostile),
                                       "/leases", "/counters", "/schedules", "/login"};
  for (const auto& path : paths) {
    CAPTURE(path);
    const auto r = c.Get(path, cookie);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->get_header_value("Content-Type").starts_with("text/html"));
    const auto csp = r->get_header_value("Content-Security-Policy");
    CHECK(csp.find("default-src 'none'") != std::string::npos);
    CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
    CHECK(r->get_header_value("X-Content-Type-Options") == "nosniff");
    // The only markup is our own: no seeded value survives unescaped.
    CHECK(r->body.find("<script") == std::string::npos);
    CHECK(r->body.find("<img") == std::string::npos);
    CHECK(r->body.find("<b>") == std::string::npos);
    CHECK(r->body.find("'pwned'") == std::string::npos);
    // The database URL is shown masked.
    const auto url = parse_url(s.url());
    if (!url.password.empty()) CHECK(r->body.find(url.password) == std::string::npos);
  }
  const auto job = c.Get("/jobs/" + std::to_string(ids.hostile), cookie)->body;
  CHECK(job.find("&lt;script&gt;document.title=&#39;pwned&#39;;window.pwned=1&lt;/script&gt;") != std::string::npos);
  CHECK(job.find("&quot;&gt;&lt;img src=x onerror=&quot;document.title=&#39;pwned&#39;&quot;&gt;&#39;") != std::string::npos);
  CHECK(job.find("&lt;/pre&gt;&lt;script&gt;") != std::string::npos); // the error and the payload
  CHECK(job.find("extract") != std::string::npos);                     // the stage table
  const auto running = c.Get("/jobs/" + std::to_string(ids.running), cookie)->body;
  CHECK(running.find("worker-7") != std::string::npos);
  const auto leases = c.Get("/leases", cookie)->body;
  CHECK(leases.find("nightly-export") != std::string::npos);
  CHECK(leases.find("host-a") != std::string::npos);
  CHECK(c.Get("/counters", cookie)->body.find("invoice") != std::string::npos);

  const auto metrics = c.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));
  CHECK(metrics->body.find("# TYPE casecore_pool_in_use gauge") != std::string::npos);
  CHECK(metrics->body.find("# TYPE casecore_jobs gauge") != std::string::npos);
  CHECK(metrics->body.find("casecore_build_info{") != std::string::npos);
  // This process's own units of work, as a histogram (docs/telemetry.md).
  CHECK(metrics->body.find("# TYPE casecore_transaction_duration_seconds histogram") != std::string::npos);
  CHECK(metrics->body.find("casecore_transaction_duration_seconds_bucket{db=\"main\",mode=\"read\",le=\"+Inf\"} ") != std::string::npos);
  CHECK(metrics->body.find("casecore_transaction_duration_seconds_count{db=\"main\",mode=\"write\"} ") != std::string::npos);

  CHECK(c.Get("/jobs/999999")->status == 404);
  CHECK(server.stop() == 0);
}

TEST_CASE("serve: filters and keyset pages of the job list") {
  scratch_database s;
  auto db = s.open_migrated();
  testing::seed_dashboard(db);
  serve_process server(CASECORE_CLI_PATH, s.url(), {"--read-only"}, {}, s.folder());
  auto c = client(server);
  const auto count = [](const std::string& body, const std::string& what) {
    std::size_t n = 0;
    for (auto at = body.find(what); at != std::string::npos; at = body.find(what, at + 1)) ++n;
    return n;
  };
  const auto beta = c.Get("/jobs?operation=beta&limit=100")->body;
  CHECK(count(beta, "<td class=\"op\">beta</td>") == 30);
  CHECK(count(beta, "<td class=\"op\">") == 30);
  const auto failed = c.Get("/jobs?state=failed")->body;
  CHECK(count(failed, "<td class=\"state-failed\">failed</td>") == 2);
  CHECK(count(failed, "<td class=\"op\">") == 2);
  const auto first = c.Get("/jobs?operation=alpha&limit=20")->body;
  CHECK(count(first, "<td class=\"op\">alpha</td>") == 20);
  const std::string older = "id=\"older\" href=\"";
  const auto at = first.find(older);
  REQUIRE(at != std::string::npos);
  auto next = first.substr(at + older.size());
  next = next.substr(0, next.find('"'));
  for (std::size_t p; (p = next.find("&amp;")) != std::string::npos;) next.replace(p, 5, "&");
  const auto second = c.Get(next)->body;
  CHECK(count(second, "<td class=\"op\">alpha</td>") == 10);
  CHECK(second.find("id=\"older\"") == std::string::npos);
  CHECK(c.Get("/jobs?state=bogus")->body.find("Unknown state") != std::string::npos);
  CHECK(c.Get("/jobs?limit=0")->body.find("page size") != std::string::npos);
}

TEST_CASE("serve: a POST without the operator session, CSRF token or own Origin is refused and writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto ids = testing::seed_dashboard(db);
  serve_process server(CASECORE_CLI_PATH, s.url(), {}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  auto c = client(server);
  const auto before_failed = fingerprint(db, ids.untouched);
  const auto before_queued = fingerprint(db, ids.queued);
  const auto path = [](std::int64_t id, const char* verb) { return "/jobs/" + std::to_string(id) + "/" + verb; };

  // Wrong operator token: 403 and no cookie.
  const auto wrong = c.Post("/login", httplib::Params{{"token", token + "x"}});
  REQUIRE(wrong);
  CHECK(wrong->status == 403);
  CHECK_FALSE(wrong->has_header("Set-Cookie"));
  const auto sess = log_in(c, ids.untouched);

  // No session at all, even with a CSRF token taken from a logged-in page.
  CHECK(c.Post(path(ids.untouched, "retry"), httplib::Params{{"csrf", sess.csrf}})->status == 403);
  CHECK(c.Post(path(ids.queued, "cancel"), httplib::Params{{"csrf", sess.csrf}})->status == 403);
  // A session but no CSRF token, or a wrong one.
  const httplib::Headers cookie{{"Cookie", sess.cookie}};
  CHECK(c.Post(path(ids.untouched, "retry"), cookie, httplib::Params{})->status == 403);
  CHECK(c.Post(path(ids.queued, "cancel"), cookie, httplib::Params{{"csrf", std::string(64, '0')}})->status == 403);
  // A forged session cookie (right shape, wrong signature) with its "CSRF token".
  auto forged = sess.cookie;
  forged[forged.size() - 1] = forged.back() == '0' ? '1' : '0';
  CHECK(c.Post(path(ids.queued, "cancel"), httplib::Headers{{"Cookie", forged}}, httplib::Params{{"csrf", sess.csrf}})->status == 403);
  // Everything right but a foreign Origin (a cross-site form).
  CHECK(c.Post(path(ids.queued, "cancel"), httplib::Headers{{"Cookie", sess.cookie}, {"Origin", "http://evil.example"}},
               httplib::Params{{"csrf", sess.csrf}})
            ->status == 403);
  // A GET never acts.
  CHECK(c.Get(path(ids.queued, "cancel"), cookie)->status == 404);
  CHECK(fingerprint(db, ids.untouched) == before_failed);
  CHECK(fingerprint(db, ids.queued) == before_queued);

  // With session and CSRF token, both actions change the database.
  const auto retried = c.Post(path(ids.untouched, "retry"), cookie, httplib::Params{{"csrf", sess.csrf}});
  REQUIRE(retried);
  CHECK(retried->status == 303);
  CHECK(jobs::get(db, ids.untouched)->state == jobs::job_state::queued);
  const auto cancelled = c.Post(path(ids.queued, "cancel"), cookie, httplib::Params{{"csrf", sess.csrf}});
  CHECK(cancelled->status == 303);
  CHECK(jobs::get(db, ids.queued)->state == jobs::job_state::cancelled);
  // A running job is asked to stop; a second retry of a queued job is a 409 with the reason.
  CHECK(c.Post(path(ids.running, "cancel"), cookie, httplib::Params{{"csrf", sess.csrf}})->status == 303);
  CHECK(jobs::get(db, ids.running)->cancel_requested);
  const auto again = c.Post(path(ids.untouched, "retry"), cookie, httplib::Params{{"csrf", sess.csrf}});
  CHECK(again->status == 409);
  CHECK(again->body.find("only failed or cancelled jobs can be retried") != std::string::npos);
  // After logout the old cookie still verifies (sessions are stateless until restart or expiry),
  // but the browser has dropped it: the response clears it.
  const auto out = c.Post("/logout", cookie, httplib::Params{{"csrf", sess.csrf}});
  CHECK(out->status == 303);
  CHECK(out->get_header_value("Set-Cookie").find("Max-Age=0") != std::string::npos);
  CHECK(server.stop() == 0);

  // A restart changes the secret: the old session and CSRF token are worthless.
  serve_process restarted(CASECORE_CLI_PATH, s.url(), {}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  auto c2 = client(restarted);
  const auto before = fingerprint(db, ids.hostile);
  CHECK(c2.Post(path(ids.hostile, "retry"), cookie, httplib::Params{{"csrf", sess.csrf}})->status == 403);
  CHECK(fingerprint(db, ids.hostile) == before);
}

TEST_CASE("serve: read-only mode refuses every POST; a foreign Host header is refused") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto ids = testing::seed_dashboard(db);
  serve_process server(CASECORE_CLI_PATH, s.url(), {"--read-only"}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  auto c = client(server);
  const auto before = fingerprint(db, ids.untouched);
  CHECK(c.Post("/login", httplib::Params{{"token", token}})->status == 403);
  CHECK(c.Post("/jobs/" + std::to_string(ids.untouched) + "/retry", httplib::Params{})->status == 403);
  CHECK(fingerprint(db, ids.untouched) == before);
  CHECK(c.Get("/jobs/" + std::to_string(ids.untouched))->body.find("id=\"retry\"") == std::string::npos);
  // DNS rebinding: a page of evil.example resolving to 127.0.0.1 names its own Host.
  CHECK(c.Get("/jobs", httplib::Headers{{"Host", "evil.example"}})->status == 403);
  CHECK(c.Get("/metrics", httplib::Headers{{"Host", "evil.example:" + std::to_string(server.port())}})->status == 403);
  CHECK(c.Get("/jobs", httplib::Headers{{"Host", "localhost:" + std::to_string(server.port())}})->status == 200);
}

TEST_CASE("serve: the database password reaches no page, error page or log line") {
  scratch_database s;
  if (s.kind() != testing::backend_kind::postgres) {
    MESSAGE("PostgreSQL only: a SQLite URL has no password");
    return;
  }
  auto db = s.open_migrated();
  testing::seed_dashboard(db);
  // The test servers trust their clients (pg-cluster.sh: trust, PgBouncer: auth_type any), so a
  // password in the URL is accepted and ignored: the server runs, and its pages must not show it.
  const std::string secret = "Sekr1tPassw0rdXyz";
  auto url = s.url();
  const auto at = url.find('@');
  const auto scheme_end = url.find("://");
  REQUIRE(at != std::string::npos);
  REQUIRE(url.substr(scheme_end + 3, at - scheme_end - 3).find(':') == std::string::npos); // no password yet
  url.insert(at, ":" + secret);
  serve_process server(CASECORE_CLI_PATH, url, {}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  REQUIRE(server.port() > 0);
  auto c = client(server);
  std::string seen = server.out() + server.err();
  for (const std::string path : {"/", "/jobs", "/jobs/1", "/leases", "/counters", "/metrics", "/jobs/999999", "/nothing"}) {
    const auto r = c.Get(path);
    REQUIRE(r);
    seen += r->body;
  }
  CHECK(seen.find("***") != std::string::npos); // the masked URL is shown
  CHECK(seen.find(secret) == std::string::npos);
  CHECK(server.stop() == 0);
  CHECK((server.out() + server.err()).find(secret) == std::string::npos);
}

TEST_CASE("serve: pause and resume through the overview's forms; a refused pause writes nothing") {
  scratch_database s;
  auto db = s.open_migrated();
  const auto ids = testing::seed_dashboard(db);
  serve_process server(CASECORE_CLI_PATH, s.url(), {}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  auto c = client(server);
  const auto sess = log_in(c, ids.hostile);
  const httplib::Headers cookie{{"Cookie", sess.cookie}};
  const httplib::Params alpha{{"operation", "alpha"}, {"concurrency_key", ""}, {"reason", "<b>vendor down</b>"}};

  auto with_csrf = alpha;
  with_csrf.emplace("csrf", sess.csrf);
  CHECK(c.Post("/pauses/pause", alpha)->status == 403);         // no session
  CHECK(c.Post("/pauses/pause", cookie, alpha)->status == 403); // no CSRF token
  CHECK(jobs::pauses(db).empty());

  const auto paused = c.Post("/pauses/pause", cookie, with_csrf);
  REQUIRE(paused);
  CHECK(paused->status == 303);
  const auto all = jobs::pauses(db);
  REQUIRE(all.size() == 1);
  CHECK(all[0].target.operation == "alpha");
  CHECK(all[0].paused_jobs == 30);
  CHECK(all[0].reason == "<b>vendor down</b>");
  const auto overview = c.Get("/", cookie)->body;
  CHECK(overview.find("&lt;b&gt;vendor down&lt;/b&gt;") != std::string::npos);
  CHECK(overview.find("class=\"resume\"") != std::string::npos);
  const auto list = c.Get("/jobs?state=paused&limit=100")->body;
  std::size_t rows = 0;
  for (auto at = list.find("<td class=\"op\">alpha</td>"); at != std::string::npos; at = list.find("<td class=\"op\">alpha</td>", at + 1)) ++rows;
  CHECK(rows == 30);

  // An empty target is the API's invalid_argument: 400 and nothing written.
  CHECK(c.Post("/pauses/pause", cookie, httplib::Params{{"operation", ""}, {"concurrency_key", ""}, {"csrf", sess.csrf}})->status == 400);
  CHECK(jobs::pauses(db).size() == 1);

  CHECK(c.Post("/pauses/resume", cookie, httplib::Params{{"operation", "alpha"}, {"concurrency_key", ""}})->status == 403);
  CHECK(jobs::pauses(db).size() == 1);
  CHECK(c.Post("/pauses/resume", cookie, httplib::Params{{"operation", "alpha"}, {"concurrency_key", ""}, {"csrf", sess.csrf}})->status == 303);
  CHECK(jobs::pauses(db).empty());
  CHECK(jobs::list(db, jobs::job_state::paused, 100).empty());
}


TEST_CASE("serve: the schedules page lists each schedule with its next and last runs, names escaped") {
  scratch_database s;
  auto db = s.open_migrated();
  schedules::schedule hostile;
  hostile.name = "<script>document.title='pwned'</script>";
  hostile.every = std::chrono::seconds(60);
  hostile.job.operation = "<b>report</b>";
  schedules::upsert(db, hostile, micros{1'700'000'000'000'000});
  schedules::schedule nightly;
  nightly.name = "nightly-export";
  nightly.cron = "30 2 * * *";
  nightly.zone = "Europe/Berlin";
  nightly.job.operation = "export";
  schedules::upsert(db, nightly);
  // One tick of the hostile schedule: it gets a last run and a last job.
  const auto ticks = schedules::run_due(db, micros{1'700'000'000'000'000 + 61'000'000});
  REQUIRE(ticks.size() == 1);
  serve_process server(CASECORE_CLI_PATH, s.url(), {"--read-only"}, {}, s.folder());
  REQUIRE(server.port() > 0);
  auto c = client(server);
  const auto r = c.Get("/schedules");
  REQUIRE(r);
  CHECK(r->status == 200);
  const auto& body = r->body;
  CHECK(body.find("<script") == std::string::npos);
  CHECK(body.find("<b>") == std::string::npos);
  CHECK(body.find("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;") != std::string::npos);
  CHECK(body.find("&lt;b&gt;report&lt;/b&gt;") != std::string::npos);
  CHECK(body.find("nightly-export") != std::string::npos);
  CHECK(body.find("30 2 * * *") != std::string::npos);
  CHECK(body.find("Europe/Berlin") != std::string::npos);
  CHECK(body.find("every 60 s") != std::string::npos);
  CHECK(body.find("2023-11-14T22:14:00.000000Z") != std::string::npos); // the hostile schedule's last run (its only tick)
  CHECK(body.find("href=\"/jobs/" + std::to_string(ticks[0].job_id) + "\"") != std::string::npos);
  CHECK(body.find("never") != std::string::npos); // nightly-export has not run
  CHECK(server.stop() == 0);
}

TEST_CASE("serve: wrong operator tokens are throttled per client address (429), the right one works after the window") {
  scratch_database s;
  auto db = s.open_migrated();
  serve_process server(CASECORE_CLI_PATH, s.url(), {"--login-attempts", "3", "--login-window", "2"},
                       {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  REQUIRE(server.port() > 0);
  auto c = client(server);
  const auto wrong = std::string(token.size(), 'x');
  for (int i = 0; i < 3; ++i) {
    const auto r = c.Post("/login", httplib::Params{{"token", wrong}});
    REQUIRE(r);
    CHECK(r->status == 403);
  }
  const auto throttled = c.Post("/login", httplib::Params{{"token", wrong}});
  REQUIRE(throttled);
  CHECK(throttled->status == 429);
  CHECK(!throttled->get_header_value("Retry-After").empty());
  // Throttled means the token is not even compared: the right one is refused too until the window passes.
  const auto right_early = c.Post("/login", httplib::Params{{"token", token}});
  REQUIRE(right_early);
  CHECK(right_early->status == 429);
  CHECK(right_early->get_header_value("Set-Cookie").empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  const auto right = c.Post("/login", httplib::Params{{"token", token}});
  REQUIRE(right);
  CHECK(right->status == 303);
  CHECK(!right->get_header_value("Set-Cookie").empty());
  // A successful login clears the address's count: three more mistypes are answered 403, not 429.
  for (int i = 0; i < 3; ++i) CHECK(c.Post("/login", httplib::Params{{"token", wrong}})->status == 403);
  CHECK(c.Post("/login", httplib::Params{{"token", wrong}})->status == 429);
  CHECK(server.stop() == 0);
}

TEST_CASE("serve: bad login throttle settings are refused at start") {
  scratch_database s;
  s.open_migrated();
  serve_process zero(CASECORE_CLI_PATH, s.url(), {"--login-attempts", "0"}, {"CASECORE_OPERATOR_TOKEN=" + token}, s.folder());
  REQUIRE(zero.exited());
  CHECK(*zero.exited() != 0);
}

TEST_CASE("serve: stage outputs on a job's page are escaped, bytes shown as hex") {
  scratch_database s;
  auto db = s.open_migrated();
  jobs::job_spec spec;
  spec.operation = "render";
  spec.subject = "doc:1";
  spec.stages = {"extract", "render"};
  const auto id = jobs::enqueue(db, spec).id;
  jobs::worker_options o;
  o.owner = "w1";
  o.threads = 1;
  jobs::worker w(db, o);
  w.on_stage("extract", [](jobs::job_context& ctx) {
    ctx.set_output_json(R"({"title": "</pre><script>document.title='pwned'</script>", "note": "<b>x</b> & \"q\""})");
  });
  w.on_stage("render", [](jobs::job_context& ctx) { ctx.set_output("<script>alert(1)</script>"); });
  REQUIRE(w.run_once() == 1);
  REQUIRE(jobs::outputs(db, id).size() == 2);

  serve_process server(CASECORE_CLI_PATH, s.url(), {"--read-only"}, {}, s.folder());
  auto c = client(server);
  const auto r = c.Get("/jobs/" + std::to_string(id));
  REQUIRE(r);
  CHECK(r->status == 200);
  const auto& body = r->body;
  CHECK(body.find("id=\"outputs\"") != std::string::npos);
  CHECK(body.find("<script") == std::string::npos);
  CHECK(body.find("<b>") == std::string::npos);
  CHECK(body.find("'pwned'") == std::string::npos);
  CHECK(body.find("&lt;/pre&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;") != std::string::npos);
  CHECK(body.find("&lt;b&gt;x&lt;/b&gt; &amp; \\&quot;q\\&quot;") != std::string::npos);
  CHECK(body.find("3c7363726970743e616c657274283129") != std::string::npos); // "<script>alert(1)" as hex
  CHECK(server.stop() == 0);
}

#endif // CASECORE_CLI_PATH
