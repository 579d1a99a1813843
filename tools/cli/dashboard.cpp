// The pages, actions and security checks of `casecore serve` (tools/cli/dashboard.hpp).
#include "dashboard.hpp"

#include "cli.hpp"
#include "html.hpp"

#include <casecore/counter.hpp>
#include <casecore/detail/token.hpp>
#include <casecore/health.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/lease.hpp>
#include <casecore/metrics.hpp>
#include <casecore/rate_limiter.hpp>
#include <casecore/schedule.hpp>
#include <casecore/url.hpp>

#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <ctime>
#include <set>

namespace casecore::cli {

namespace {

constexpr std::string_view session_cookie = "casecore_session";
constexpr std::int64_t session_seconds = 8 * 3600;
constexpr std::size_t payload_shown = 64 * 1024; ///< bytes of a payload a job page shows

// Scripts: none at all (the pages work without JavaScript), so even markup that escaped html()
// could not run. Styles only from our own /style.css; forms only post back to us.
constexpr const char* csp =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

constexpr const char* stylesheet = R"css(
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:.6em 1em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .db{margin-left:auto;font-family:monospace;font-size:.85em;opacity:.8}
main{padding:1em 1.5em}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;background:#fff;font-size:.9em}th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eaeef2}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #d0d7de;padding:.6em;white-space:pre-wrap;word-break:break-all;max-height:30em;overflow:auto}
.state-failed{color:#cf222e;font-weight:600}.state-running{color:#0969da;font-weight:600}.state-succeeded{color:#1a7f37}
.state-cancelled{color:#6e7781}.ok{color:#1a7f37}.warn{color:#9a6700}.critical{color:#cf222e;font-weight:600}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5em .8em;margin:.8em 0}
.error{background:#ffebe9;border:1px solid #cf222e;padding:.5em .8em;margin:.8em 0}
form.inline{display:inline}button{cursor:pointer}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
)css";

// In the order of a job's life, as `casecore job list --state` names them.
constexpr jobs::job_state every_state[] = {jobs::job_state::waiting, jobs::job_state::blocked, jobs::job_state::queued,
                                           jobs::job_state::paused, jobs::job_state::running, jobs::job_state::succeeded,
                                           jobs::job_state::failed, jobs::job_state::cancelled};

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

/// Constant-time equality of two strings (the length is not secret: every compared value is a
/// fixed-length HMAC).
bool same(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// Parse a whole decimal id; nullopt for anything else.
std::optional<std::int64_t> parse_id(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

std::string state_class(std::string_view state) { return "state-" + std::string(state); }

std::string ms(micros from, micros to) {
  if (from <= 0 || to <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(to - from) / 1000.0);
  return buf;
}

std::string stage_name(const jobs::job& j) {
  const auto at = static_cast<std::size_t>(j.current_stage);
  return at < j.stages.size() ? j.stages[at] : "done";
}

/// The state the routes share.
class dashboard {
public:
  dashboard(database db, serve_settings settings) : db_(std::move(db)), settings_(std::move(settings)), secret_(detail::random_hex(32)) {
    monitor_.add_database(db_, "main");
    monitor_.add_queue("jobs.ready", [db = db_]() mutable { return static_cast<double>(jobs::inspect(db).ready); }, 100, 1000);
    allowed_hosts_ = {settings_.host + ":" + std::to_string(settings_.port), "127.0.0.1:" + std::to_string(settings_.port),
                      "localhost:" + std::to_string(settings_.port), "[::1]:" + std::to_string(settings_.port)};
    check_hosts_ = settings_.host != "0.0.0.0" && settings_.host != "::" && settings_.host != "[::]";
  }

  void mount(httplib::Server& s) {
    s.set_payload_max_length(64 * 1024);
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (check_hosts_ && !allowed_hosts_.contains(req.get_header_value("Host"))) {
        res.status = 403;
        res.set_content("casecore serve: unexpected Host header (use the address it listens on)\n", "text/plain; charset=utf-8");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    s.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy", csp);
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("X-Frame-Options", "DENY");
      // same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with our own forms.
      res.set_header("Referrer-Policy", "same-origin");
      res.set_header("Cache-Control", "no-store");
    });
    s.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string message = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      res.status = 500;
      res.set_content(page(req, "Error", "<div class=\"error\">" + html(mask_secrets(message)) + "</div>"), "text/html; charset=utf-8");
    });
    s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return; // a handler's own error page
      res.set_content(page(req, "Error " + std::to_string(res.status), "<p>Nothing here (HTTP " + std::to_string(res.status) + ").</p>"),
                      "text/html; charset=utf-8");
    });

    s.Get("/style.css", [](const httplib::Request&, httplib::Response& res) { res.set_content(stylesheet, "text/css; charset=utf-8"); });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      // The database-wide figures (as `casecore metrics`) and this long-running process's own pool.
      metrics::exposition_options o;
      o.process_figures = true;
      res.set_content(metrics::database_prometheus_text(db_, o), "text/plain; version=0.0.4; charset=utf-8");
    });
    s.Get("/", [this](const httplib::Request& req, httplib::Response& res) { send(res, page(req, "Overview", overview(req))); });
    s.Get("/jobs", [this](const httplib::Request& req, httplib::Response& res) { job_list(req, res); });
    s.Get(R"(/jobs/(\d{1,18}))", [this](const httplib::Request& req, httplib::Response& res) { job_page(req, res, ""); });
    s.Post(R"(/jobs/(\d{1,18})/(retry|cancel))", [this](const httplib::Request& req, httplib::Response& res) { job_action(req, res); });
    s.Post(R"(/pauses/(pause|resume))", [this](const httplib::Request& req, httplib::Response& res) { pause_action(req, res); });
    s.Get("/leases", [this](const httplib::Request& req, httplib::Response& res) { send(res, page(req, "Leases", leases())); });
    s.Get("/counters", [this](const httplib::Request& req, httplib::Response& res) { send(res, page(req, "Counters", counters())); });
    s.Get("/schedules", [this](const httplib::Request& req, httplib::Response& res) { send(res, page(req, "Schedules", schedules())); });
    s.Get("/login", [this](const httplib::Request& req, httplib::Response& res) { send(res, page(req, "Log in", login_form(""))); });
    s.Post("/login", [this](const httplib::Request& req, httplib::Response& res) { login(req, res); });
    s.Post("/logout", [this](const httplib::Request& req, httplib::Response& res) {
      if (!post_allowed(req, res)) return;
      res.set_header("Set-Cookie", std::string(session_cookie) + "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
      res.set_redirect("/", 303);
    });
  }

private:
  // --- security --------------------------------------------------------------------------------

  std::string mac(std::string_view purpose, std::string_view value) const {
    const std::string text = std::string(purpose) + '\n' + std::string(value);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()), reinterpret_cast<const unsigned char*>(text.data()),
              text.size(), md, &len))
      raise(errc::internal, "HMAC-SHA256 failed");
    return hex(md, len);
  }

  static std::string cookie(const httplib::Request& req, std::string_view name) {
    const auto header = req.get_header_value("Cookie");
    std::string_view rest = header;
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      auto part = rest.substr(0, semi);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      if (part.size() > name.size() && part.starts_with(name) && part[name.size()] == '=') return std::string(part.substr(name.size() + 1));
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
    return {};
  }

  /// The session cookie's value when it is ours and not expired ("" otherwise).
  std::string session(const httplib::Request& req) const {
    if (settings_.read_only) return {};
    const auto v = cookie(req, session_cookie);
    // <expiry>.<nonce>.<mac>
    const auto dot1 = v.find('.');
    const auto dot2 = dot1 == std::string::npos ? std::string::npos : v.find('.', dot1 + 1);
    if (dot2 == std::string::npos) return {};
    const auto expiry = parse_id(std::string_view(v).substr(0, dot1));
    if (!expiry || *expiry < unix_now()) return {};
    if (!same(mac("session", v.substr(0, dot2)), std::string_view(v).substr(dot2 + 1))) return {};
    return v;
  }

  std::string csrf_for(const std::string& session_value) const { return mac("csrf", session_value); }

  /// An Origin header, when a browser sends one, must be this server.
  bool same_origin(const httplib::Request& req) const {
    if (!req.has_header("Origin")) return true;
    const auto origin = req.get_header_value("Origin");
    if (!origin.starts_with("http://")) return false;
    return !check_hosts_ || allowed_hosts_.contains(origin.substr(7));
  }

  void refuse(const httplib::Request& req, httplib::Response& res, const std::string& why) {
    res.status = 403;
    res.set_content(page(req, "Refused", "<div class=\"error\">" + html(why) + "</div>"), "text/html; charset=utf-8");
  }

  /// Checks every mutating POST passes before it reads or writes anything.
  bool post_allowed(const httplib::Request& req, httplib::Response& res) {
    if (settings_.read_only) {
      refuse(req, res, "This dashboard runs read-only (--read-only): no action is possible.");
      return false;
    }
    if (!same_origin(req)) {
      refuse(req, res, "Refused: the request came from another origin.");
      return false;
    }
    const auto s = session(req);
    if (s.empty()) {
      refuse(req, res, "Refused: log in with the operator token first.");
      return false;
    }
    if (!same(csrf_for(s), req.get_param_value("csrf"))) {
      refuse(req, res, "Refused: missing or wrong CSRF token (reload the page and try again).");
      return false;
    }
    return true;
  }

  std::string csrf_field(const httplib::Request& req) const {
    const auto s = session(req);
    return "<input type=\"hidden\" name=\"csrf\" value=\"" + html(s.empty() ? "" : csrf_for(s)) + "\">";
  }

  void login(const httplib::Request& req, httplib::Response& res) {
    if (settings_.read_only) return refuse(req, res, "This dashboard runs read-only (--read-only): there is nothing to log in to.");
    if (!same_origin(req)) return refuse(req, res, "Refused: the request came from another origin.");
    // Brute force is bounded per client address: every attempt spends a token of a shared rate
    // limit BEFORE the token is compared, so at most login_attempts guesses per window are ever
    // evaluated, however many requests race (the limiter is exact across processes).
    const rate_limiter::limit per_address{settings_.login_attempts, settings_.login_window};
    const auto throttle_key = "casecore.serve.login:" + req.remote_addr;
    if (!schema_versions(db_).contains("casecore.rate"))
      return refuse(req, res, "Refused: the database has no rate limit schema (run `casecore migrate`): logins are disabled.");
    const auto attempt = rate_limiter::try_acquire(db_, throttle_key, per_address);
    if (!attempt.acquired) {
      const auto secs = std::max<std::int64_t>(1, (attempt.retry_after.count() + 999999) / 1000000);
      res.status = 429;
      res.set_header("Retry-After", std::to_string(secs));
      res.set_content(page(req, "Log in", login_form("Too many login attempts from this address: try again in " + std::to_string(secs) +
                                                     " s.")),
                      "text/html; charset=utf-8");
      return;
    }
    // Both sides are hashed first, so the comparison is constant-time in the token's length too.
    if (!same(mac("token", req.get_param_value("token")), mac("token", settings_.operator_token))) {
      res.status = 403;
      res.set_content(page(req, "Log in", login_form("Wrong operator token.")), "text/html; charset=utf-8");
      return;
    }
    rate_limiter::forget(db_, throttle_key); // the operator is in: mistypes before this do not count
    const auto head = std::to_string(unix_now() + session_seconds) + "." + detail::random_token();
    const auto value = head + "." + mac("session", head);
    res.set_header("Set-Cookie", std::string(session_cookie) + "=" + value + "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                                     std::to_string(session_seconds));
    res.set_redirect("/", 303);
  }

  std::string login_form(const std::string& error) const {
    if (settings_.read_only) return "<p>This dashboard runs read-only: no login, no actions.</p>";
    return (error.empty() ? "" : "<div class=\"error\">" + html(error) + "</div>") +
           "<form method=\"post\" action=\"/login\"><p><label>Operator token <input type=\"password\" name=\"token\" "
           "autocomplete=\"current-password\" required autofocus></label> <button type=\"submit\">Log in</button></p></form>"
           "<p>The token is the one `casecore serve` was started with (--token-file or CASECORE_OPERATOR_TOKEN). "
           "The session cookie lasts 8 hours or until the server restarts.</p>";
  }

  // --- pages -----------------------------------------------------------------------------------

  static void send(httplib::Response& res, const std::string& body) { res.set_content(body, "text/html; charset=utf-8"); }

  std::string page(const httplib::Request& req, const std::string& title, const std::string& body) const {
    std::string who;
    if (settings_.read_only) who = "<span>read-only</span>";
    else if (session(req).empty()) who = "<a href=\"/login\">Log in</a>";
    else who = "<form class=\"inline\" method=\"post\" action=\"/logout\">" + csrf_field(req) + "<button type=\"submit\">Log out</button></form>";
    return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html(title) +
           " · casecore</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body><header><strong>casecore</strong>"
           "<a href=\"/\">Overview</a><a href=\"/jobs\">Jobs</a><a href=\"/leases\">Leases</a><a href=\"/counters\">Counters</a>"
           "<a href=\"/schedules\">Schedules</a><a href=\"/metrics\">Metrics</a>" +
           who + "<span class=\"db\">" + html(db_.describe()) + "</span></header><main><h1>" + html(title) + "</h1>" + body +
           "</main></body></html>";
  }

  std::string overview(const httplib::Request& req) {
    std::string out;
    const auto versions = schema_versions(db_);
    const bool have_jobs = versions.contains("casecore.jobs");

    const auto report = monitor_.check();
    out += "<h2>Health</h2><p>Overall: <span id=\"health\" class=\"" + std::string(health::to_string(report.overall)) + "\">" +
           std::string(health::to_string(report.overall)) + "</span></p>";
    if (!report.findings.empty()) {
      out += "<table><tr><th>check</th><th>level</th><th>value</th><th>threshold</th><th>reason</th></tr>";
      for (const auto& f : report.findings)
        out += "<tr><td>" + html(f.check) + "</td><td class=\"" + std::string(health::to_string(f.level)) + "\">" +
               std::string(health::to_string(f.level)) + "</td><td class=\"num\">" + num(f.value) + "</td><td class=\"num\">" +
               num(f.threshold) + "</td><td>" + html(f.reason) + "</td></tr>";
      out += "</table>";
    }

    const auto p = db_.pool_stats();
    out += "<h2>Pool (this server's connections)</h2><table><tr><th>capacity</th><th>in use</th><th>idle</th><th>waiting</th>"
           "<th>timeouts</th><th>opened</th><th>reconnects</th></tr><tr><td class=\"num\">" +
           num(p.capacity) + "</td><td class=\"num\">" + num(p.in_use) + "</td><td class=\"num\">" + num(p.idle) +
           "</td><td class=\"num\">" + num(p.waiting) + "</td><td class=\"num\">" + num(p.timeouts) + "</td><td class=\"num\">" +
           num(p.opened) + "</td><td class=\"num\">" + num(p.reconnects) + "</td></tr></table>";

    if (have_jobs) {
      const auto q = jobs::inspect(db_);
      out += "<h2>Jobs</h2><table id=\"job-states\"><tr><th>state</th><th>jobs</th></tr>";
      for (auto st : every_state) {
        const auto name = std::string(jobs::to_string(st));
        const auto it = q.by_state.find(name);
        out += "<tr><td><a class=\"" + state_class(name) + "\" href=\"/jobs?state=" + name + "\">" + name + "</a></td><td class=\"num\">" +
               num(it == q.by_state.end() ? std::int64_t{0} : it->second) + "</td></tr>";
      }
      char age[32];
      std::snprintf(age, sizeof age, "%.3f", static_cast<double>(q.oldest_ready_age) / 1e6);
      out += "</table><p>Ready now: " + num(q.ready) + " · scheduled for later: " + num(q.scheduled) + " · oldest ready: " + age + " s</p>";
      if (!q.active_by_stage.empty()) {
        out += "<table><tr><th>active jobs at stage</th><th>jobs</th></tr>";
        for (const auto& [stage, n] : q.active_by_stage) out += "<tr><td>" + html(stage) + "</td><td class=\"num\">" + num(n) + "</td></tr>";
        out += "</table>";
      }
      if (!q.stuck.empty()) {
        out += "<p class=\"warn\">Running jobs whose claim expired (a reclaim will requeue them):";
        for (auto id : q.stuck) out += " <a href=\"/jobs/" + num(id) + "\">#" + num(id) + "</a>";
        out += "</p>";
      }
      out += pauses_section(req);
    } else {
      out += "<p>The database has no job queue schema (run <code>casecore migrate</code>).</p>";
    }

    out += "<h2>Outbox backlog</h2>" + outbox_backlog();

    out += "<h2>Schema</h2><table><tr><th>component</th><th>version</th></tr>";
    for (const auto& [component, version] : versions)
      out += "<tr><td>" + html(component) + "</td><td class=\"num\">" + num(version) + "</td></tr>";
    out += "</table>";
    return out;
  }

  /// Pauses in force (jobs::pauses) with a Resume form each, and a form to pause an operation and/or key.
  std::string pauses_section(const httplib::Request& req) {
    const auto all = jobs::pauses(db_);
    const bool act = !settings_.read_only && !session(req).empty();
    std::string out = "<h2>Pauses</h2>";
    if (all.empty()) out += "<p>No operation or concurrency key is paused.</p>";
    else {
      out += "<table id=\"pauses\"><tr><th>operation</th><th>concurrency key</th><th>paused jobs</th><th>since</th><th>by</th><th>reason</th>" +
             std::string(act ? "<th></th>" : "") + "</tr>";
      for (const auto& p : all) {
        out += "<tr><td>" + (p.target.operation.empty() ? "<i>any</i>" : html(p.target.operation)) + "</td><td>" +
               (p.target.concurrency_key.empty() ? "<i>any</i>" : html(p.target.concurrency_key)) + "</td><td class=\"num\">" +
               num(p.paused_jobs) + "</td><td>" + html(iso_time(p.paused_at)) + "</td><td>" + html(p.paused_by) + "</td><td>" + html(p.reason) + "</td>";
        if (act)
          out += "<td><form class=\"inline\" method=\"post\" action=\"/pauses/resume\">" + csrf_field(req) +
                 "<input type=\"hidden\" name=\"operation\" value=\"" + html(p.target.operation) +
                 "\"><input type=\"hidden\" name=\"concurrency_key\" value=\"" + html(p.target.concurrency_key) +
                 "\"><button type=\"submit\" class=\"resume\">Resume</button></form></td>";
        out += "</tr>";
      }
      out += "</table>";
    }
    if (act)
      out += "<form method=\"post\" action=\"/pauses/pause\" id=\"pause-form\">" + csrf_field(req) +
             "<p>Pause <label>operation <input type=\"text\" name=\"operation\" maxlength=\"100\"></label> <label>concurrency key "
             "<input type=\"text\" name=\"concurrency_key\" maxlength=\"200\"></label> <label>reason <input type=\"text\" name=\"reason\" "
             "maxlength=\"500\"></label> <button type=\"submit\">Pause</button> (claims stop on every host; running jobs finish)</p></form>";
    else if (!settings_.read_only)
      out += "<p><a href=\"/login\">Log in</a> to pause or resume.</p>";
    return out;
  }

  void pause_action(const httplib::Request& req, httplib::Response& res) {
    if (!post_allowed(req, res)) return;
    const jobs::pause_target target{req.get_param_value("operation"), req.get_param_value("concurrency_key")};
    try {
      if (req.matches[1].str() == "pause") jobs::pause(db_, target, req.get_param_value("reason"), "casecore serve operator");
      else jobs::resume(db_, target);
    } catch (const casecore::error& e) {
      res.status = e.code() == errc::invalid_argument ? 400 : 409;
      send(res, page(req, "Not done", "<div class=\"error\" id=\"message\">" + html(mask_secrets(e.what())) +
                                          "</div><p><a href=\"/\">Back to the overview</a></p>"));
      return;
    }
    res.set_redirect("/", 303);
  }

  std::string outbox_backlog() {
    // One GROUP BY over the outbox, which holds only undelivered messages (delivered ones are
    // deleted), read through its (topic, available_at, id) index.
    const auto rows = db_.read([](transaction& tx) {
      std::vector<std::tuple<std::string, std::int64_t, micros>> out;
      if (!tx.query_one<bool>(tx.sql().table_exists, "casecore_outbox")) return out;
      for (auto r : tx.exec("SELECT topic, count(*), min(created_at) FROM casecore_outbox GROUP BY topic ORDER BY topic"))
        out.emplace_back(r.get<std::string>(0), r.get<std::int64_t>(1), r.get<micros>(2));
      return out;
    });
    if (rows.empty()) return "<p>No undelivered messages.</p>";
    std::string out = "<table><tr><th>topic</th><th>pending</th><th>oldest created</th></tr>";
    for (const auto& [topic, n, oldest] : rows)
      out += "<tr><td>" + html(topic) + "</td><td class=\"num\">" + num(n) + "</td><td>" + html(iso_time(oldest)) + "</td></tr>";
    return out + "</table>";
  }

  void job_list(const httplib::Request& req, httplib::Response& res) {
    jobs::list_query q;
    q.limit = 50;
    std::string error;
    const auto state = req.get_param_value("state");
    if (!state.empty()) {
      q.state = jobs::state_from_string(state);
      if (!q.state) error = "Unknown state; showing every state.";
    }
    q.operation = req.get_param_value("operation");
    if (q.operation.size() > 100) {
      error = "The operation filter is longer than 100 characters; ignored.";
      q.operation.clear();
    }
    if (const auto before = req.get_param_value("before"); !before.empty()) {
      if (const auto v = parse_id(before)) q.before_id = *v;
      else error = "Bad page cursor; showing the newest jobs.";
    }
    if (const auto limit = req.get_param_value("limit"); !limit.empty()) {
      const auto v = parse_id(limit);
      if (v && *v >= 1 && *v <= 500) q.limit = static_cast<std::size_t>(*v);
      else error = "The page size must be 1..500; showing 50.";
    }
    const auto all = jobs::list(db_, q);

    std::string out;
    if (!error.empty()) out += "<div class=\"error\">" + html(error) + "</div>";
    out += "<form method=\"get\" action=\"/jobs\" id=\"filters\"><label>State <select name=\"state\"><option value=\"\">any</option>";
    for (auto st : every_state) {
      const auto name = std::string(jobs::to_string(st));
      out += "<option value=\"" + name + "\"" + (q.state == st ? " selected" : "") + ">" + name + "</option>";
    }
    out += "</select></label> <label>Operation <input type=\"text\" name=\"operation\" maxlength=\"100\" value=\"" + html(q.operation) +
           "\"></label> <label>Per page <input type=\"number\" name=\"limit\" min=\"1\" max=\"500\" value=\"" + num(q.limit) +
           "\"></label> <button type=\"submit\">Filter</button></form>";
    out += "<table id=\"jobs\"><tr><th>id</th><th>state</th><th>operation</th><th>subject</th><th>stage</th><th>attempts</th>"
           "<th>created</th><th>last error</th></tr>";
    for (const auto& j : all) {
      const auto st = std::string(jobs::to_string(j.state));
      out += "<tr><td class=\"num\"><a href=\"/jobs/" + num(j.id) + "\">" + num(j.id) + "</a></td><td class=\"" + state_class(st) + "\">" + st +
             (j.cancel_requested && j.state == jobs::job_state::running ? " (cancel requested)" : "") + "</td><td class=\"op\">" +
             html(j.operation) + "</td><td>" + html(j.subject) + "</td><td>" + html(stage_name(j)) + "</td><td class=\"num\">" +
             num(j.attempts) + "/" + num(j.max_attempts) + "</td><td>" + html(iso_time(j.created_at)) + "</td><td>" +
             html(j.last_error.size() > 200 ? j.last_error.substr(0, 200) + "…" : j.last_error) + "</td></tr>";
    }
    out += "</table>";
    if (all.empty()) out += "<p>No jobs match.</p>";
    const auto base = "/jobs?state=" + url_component(q.state ? std::string(jobs::to_string(*q.state)) : "") +
                      "&operation=" + url_component(q.operation) + "&limit=" + num(q.limit);
    out += "<p>";
    if (q.before_id != 0) out += "<a href=\"" + html(base) + "\">« newest</a> ";
    if (all.size() == q.limit) out += "<a id=\"older\" href=\"" + html(base + "&before=" + num(all.back().id)) + "\">older »</a>";
    out += "</p>";
    send(res, page(req, "Jobs", out));
  }

  void job_page(const httplib::Request& req, httplib::Response& res, const std::string& message) {
    const auto id = parse_id(req.matches[1].str());
    const auto j = id ? jobs::get(db_, *id) : std::nullopt;
    if (!j) {
      res.status = 404;
      send(res, page(req, "No such job", "<p>Job " + html(req.matches[1].str()) + " does not exist (it may have been pruned).</p>"));
      return;
    }
    const auto stages = jobs::stages(db_, j->id);
    const auto st = std::string(jobs::to_string(j->state));
    std::string out;
    if (!message.empty()) out += "<div class=\"error\" id=\"message\">" + html(message) + "</div>";
    out += "<dl><dt>state</dt><dd id=\"state\" class=\"" + state_class(st) + "\">" + st +
           (j->cancel_requested && j->state == jobs::job_state::running ? " (cancel requested)" : "") + "</dd>";
    out += "<dt>operation</dt><dd id=\"operation\">" + html(j->operation) + "</dd><dt>subject</dt><dd>" + html(j->subject) + "</dd>";
    out += "<dt>stage</dt><dd>" + html(stage_name(*j)) + " (" + num(j->current_stage) + "/" + num(j->stages.size()) + ")</dd>";
    out += "<dt>attempts</dt><dd>" + num(j->attempts) + "/" + num(j->max_attempts) + "</dd><dt>priority</dt><dd>" + num(j->priority) + "</dd>";
    if (!j->concurrency_key.empty()) out += "<dt>concurrency key</dt><dd>" + html(j->concurrency_key) + "</dd>";
    if (j->state == jobs::job_state::running)
      out += "<dt>worker</dt><dd>" + html(j->lease_owner) + " (fencing token " + num(j->lease_epoch) + ", claim until " +
             html(iso_time(j->lease_expires_at)) + ", last heartbeat " + html(iso_time(j->heartbeat_at)) + ")</dd>";
    out += "<dt>created</dt><dd>" + html(iso_time(j->created_at)) + "</dd><dt>run at</dt><dd>" + html(iso_time(j->run_at)) +
           "</dd><dt>finished</dt><dd>" + html(iso_time(j->finished_at)) + "</dd></dl>";
    if (!j->last_error.empty()) out += "<h2>Last error</h2><pre id=\"last-error\">" + html(j->last_error) + "</pre>";

    if (!settings_.read_only) {
      const bool can_retry = j->state == jobs::job_state::failed || j->state == jobs::job_state::cancelled;
      const bool can_cancel = j->state == jobs::job_state::queued || j->state == jobs::job_state::paused ||
                              j->state == jobs::job_state::waiting || j->state == jobs::job_state::blocked ||
                              (j->state == jobs::job_state::running && !j->cancel_requested);
      if ((can_retry || can_cancel) && session(req).empty()) out += "<p><a href=\"/login\">Log in</a> to retry or cancel this job.</p>";
      else if (can_retry || can_cancel) {
        out += "<p>";
        if (can_retry)
          out += "<form class=\"inline\" method=\"post\" action=\"/jobs/" + num(j->id) + "/retry\">" + csrf_field(req) +
                 "<button type=\"submit\" id=\"retry\">Retry</button></form> ";
        if (can_cancel)
          out += "<form class=\"inline\" method=\"post\" action=\"/jobs/" + num(j->id) + "/cancel\">" + csrf_field(req) +
                 "<button type=\"submit\" id=\"cancel\">Cancel</button></form>";
        out += "</p>";
      }
    }

    out += "<h2>Stages</h2><table id=\"stages\"><tr><th>#</th><th>stage</th><th>state</th><th>attempts</th><th>started</th>"
           "<th>duration ms</th><th>error</th></tr>";
    for (std::size_t i = 0; i < j->stages.size(); ++i) {
      const auto rec = std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.position == static_cast<int>(i); });
      if (rec == stages.end()) {
        out += "<tr><td class=\"num\">" + num(i) + "</td><td>" + html(j->stages[i]) + "</td><td>pending</td><td class=\"num\">0</td>"
               "<td>-</td><td>-</td><td></td></tr>";
        continue;
      }
      out += "<tr><td class=\"num\">" + num(i) + "</td><td>" + html(rec->stage) + "</td><td class=\"" + state_class(rec->state) + "\">" +
             html(rec->state) + "</td><td class=\"num\">" + num(rec->attempts) + "</td><td>" + html(iso_time(rec->started_at)) +
             "</td><td class=\"num\">" + ms(rec->started_at, rec->finished_at) + "</td><td>" + html(rec->error) + "</td></tr>";
    }
    out += "</table>";
    // Each stage's recorded output (job_outputs.hpp): JSON text escaped in a <pre>, bytes as their
    // length and a hex prefix (never as markup, whatever they hold).
    if (schema_versions(db_).contains("casecore.job_outputs")) {
      const auto outputs = jobs::outputs(db_, j->id);
      if (!outputs.empty()) {
        out += "<h2>Outputs</h2><table id=\"outputs\"><tr><th>#</th><th>stage</th><th>kind</th><th>size</th><th>written</th><th>output</th></tr>";
        for (const auto& o : outputs) {
          out += "<tr><td class=\"num\">" + num(o.position) + "</td><td>" + html(o.stage) + "</td><td>" + html(jobs::to_string(o.kind)) +
                 "</td><td class=\"num\">" + num(o.data.size()) + "</td><td>" + html(iso_time(o.written_at)) + "</td><td>";
          if (o.kind == jobs::output_kind::json) {
            out += "<pre class=\"output\">" + html(std::string_view(o.data).substr(0, payload_shown)) + "</pre>";
            if (o.data.size() > payload_shown) out += "Showing the first " + num(payload_shown) + " bytes.";
          } else {
            const auto shown = std::string_view(o.data).substr(0, 64);
            out += "<code>" + hex(reinterpret_cast<const unsigned char*>(shown.data()), shown.size()) + (o.data.size() > shown.size() ? "..." : "") + "</code>";
          }
          out += "</td></tr>";
        }
        out += "</table>";
      }
    }
    out += "<h2>Payload</h2>";
    if (j->payload.empty()) out += "<p>(empty)</p>";
    else {
      out += "<pre id=\"payload\">" + html(std::string_view(j->payload).substr(0, payload_shown)) + "</pre>";
      if (j->payload.size() > payload_shown)
        out += "<p>Showing the first " + num(payload_shown) + " of " + num(j->payload.size()) + " bytes.</p>";
    }
    send(res, page(req, "Job " + num(j->id), out));
  }

  void job_action(const httplib::Request& req, httplib::Response& res) {
    if (!post_allowed(req, res)) return;
    const auto id = parse_id(req.matches[1].str());
    const auto verb = req.matches[2].str();
    try {
      if (!id || !jobs::get(db_, *id)) {
        res.status = 404;
        send(res, page(req, "No such job", "<p>Nothing was changed.</p>"));
        return;
      }
      if (verb == "retry") {
        jobs::retry(db_, *id);
      } else if (!jobs::cancel(db_, *id)) {
        raise(errc::invalid_transition, "the job is no longer queued or running: nothing was cancelled");
      }
    } catch (const casecore::error& e) {
      // A lost race (someone else retried, a worker finished) is shown on the job's page.
      res.status = 409;
      job_page(req, res, mask_secrets(e.what()));
      return;
    }
    res.set_redirect("/jobs/" + num(*id), 303);
  }

  std::string leases() {
    if (!schema_versions(db_).contains("casecore.lease")) return "<p>The database has no lease schema.</p>";
    std::string out = "<table id=\"leases\"><tr><th>name</th><th>holder</th><th>fencing token</th><th>held</th><th>expires</th>"
                      "<th>acquired</th></tr>";
    for (const auto& l : lease::list(db_))
      out += "<tr><td>" + html(l.name) + "</td><td>" + html(l.owner) + "</td><td class=\"num\">" + num(l.token) + "</td><td>" +
             (l.held ? "<span class=\"ok\">held</span>" : "expired / released") + "</td><td>" + html(iso_time(l.expires_at)) +
             "</td><td>" + html(iso_time(l.acquired_at)) + "</td></tr>";
    return out + "</table>";
  }

  /// Every schedule by name with its spec, next run and last run (as `casecore schedule list`).
  std::string schedules() {
    if (!schema_versions(db_).contains("casecore.schedules")) return "<p>The database has no schedule schema (run <code>casecore migrate</code>).</p>";
    const auto all = schedules::list(db_);
    if (all.empty()) return "<p>No schedules are declared (schedule.hpp: schedules::upsert).</p>";
    std::string out = "<table id=\"schedules\"><tr><th>name</th><th>spec</th><th>zone</th><th>catch-up</th><th>operation</th>"
                      "<th>next run</th><th>last run</th><th>last job</th></tr>";
    for (const auto& i : all) {
      const auto& sp = i.spec;
      std::string spec = sp.cron;
      if (spec.empty()) {
        spec = "every " + num(sp.every.count() / 1000) + " s";
        if (sp.offset.count() != 0) spec += " +" + num(sp.offset.count() / 1000) + " s";
      }
      out += "<tr><td>" + html(sp.name) + "</td><td>" + html(spec) + "</td><td>" + html(sp.zone) + "</td><td>" +
             html(schedules::to_string(sp.policy)) + "</td><td>" + html(sp.job.operation) + "</td><td>" + html(iso_time(i.next_at)) +
             "</td><td>" + (i.last_tick_at ? html(iso_time(i.last_tick_at)) : "never") + "</td><td>" +
             (i.last_job_id ? "<a href=\"/jobs/" + num(i.last_job_id) + "\">" + num(i.last_job_id) + "</a>" : "-") + "</td></tr>";
    }
    return out + "</table>";
  }

  std::string counters() {
    const auto all = db_.read([](transaction& tx) {
      if (!tx.query_one<bool>(tx.sql().table_exists, "casecore_counters")) return std::vector<counter::entry>{};
      return counter::list(tx);
    });
    std::string out = "<table id=\"counters\"><tr><th>name</th><th>scope</th><th>value</th></tr>";
    for (const auto& c : all)
      out += "<tr><td>" + html(c.name) + "</td><td>" + html(c.scope) + "</td><td class=\"num\">" + num(c.value) + "</td></tr>";
    return out + "</table>";
  }

  database db_;
  serve_settings settings_;
  std::string secret_; ///< per process: signs sessions and CSRF tokens
  health::monitor monitor_;
  std::set<std::string> allowed_hosts_;
  bool check_hosts_ = true;
};

} // namespace

std::shared_ptr<void> mount_dashboard(httplib::Server& server, database db, const serve_settings& settings) {
  auto d = std::make_shared<dashboard>(std::move(db), settings);
  d->mount(server);
  return d;
}

} // namespace casecore::cli
