// Properties of database URL parsing (casecore::parse_url, casecore::mask_secrets): it never crashes
// (any input either parses or throws bad_url, never anything else); the password never appears in
// the masked form, in any error message, nor in any text passed through mask_secrets; well-formed
// URLs built from known parts parse back into exactly those parts, and their masked form parses to
// itself.
#include "property.hpp"

#include <casecore/error.hpp>
#include <casecore/url.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <vector>

using casecore::proof::any_string;
using casecore::proof::check_property;
using casecore::proof::string_of;

namespace {

const int cases = casecore::proof::case_count();

// Parts of a well-formed PostgreSQL URL. User, host and database are lower case; every password
// starts with "~" and an upper-case letter, so it is never a substring of the rest of the URL or of
// an error message's own text by accident.
struct pg_parts {
  std::string scheme, user, password, hosts, db;
  bool has_password = false, has_user = false, has_path = false;
  std::vector<std::pair<std::string, std::string>> query; // in URL order
};

const std::vector<std::string> casecore_pg_keys{"pool_size", "pool_overflow", "acquire_timeout_ms", "statement_timeout_ms",
                                                "lock_timeout_ms", "reconnect_budget_ms"};
const std::vector<std::string> driver_keys{"sslmode", "connect_timeout", "application_name", "target_session_attrs"};

rc::Gen<std::string> password_gen() {
  return rc::gen::map(rc::gen::pair(string_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1, 2), string_of("abcXYZ0123456789._~!$&'()*+,;=:-", 0, 24)),
                      [](const std::pair<std::string, std::string>& p) { return "~" + p.first + p.second; });
}

rc::Gen<std::string> host_gen() {
  const auto one = rc::gen::oneOf(
      string_of("abcdefghijklmnopqrstuvwxyz0123456789.-", 1, 20), rc::gen::element<std::string>("[::1]", "[fe80::1]", "127.0.0.1"));
  const auto port = rc::gen::oneOf(rc::gen::just(std::string()),
                                   rc::gen::map(rc::gen::inRange(1, 65536), [](int p) { return ":" + std::to_string(p); }));
  const auto host_port = rc::gen::map(rc::gen::pair(one, port), [](const std::pair<std::string, std::string>& p) { return p.first + p.second; });
  const auto list = rc::gen::mapcat(rc::gen::inRange<std::size_t>(1, 4), [host_port](std::size_t n) {
    return rc::gen::container<std::vector<std::string>>(n, host_port);
  });
  return rc::gen::map(list, [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& h : v) out += (out.empty() ? "" : ",") + h;
    return out;
  });
}

// A password given as a query parameter: as above, without '&' (that would end the parameter).
rc::Gen<std::string> query_password_gen() {
  return rc::gen::map(password_gen(), [](std::string pw) {
    std::replace(pw.begin(), pw.end(), '&', '+');
    return pw;
  });
}

pg_parts make_parts() {
  pg_parts p;
  p.scheme = *rc::gen::element<std::string>("postgresql", "postgres");
  p.has_user = *rc::gen::arbitrary<bool>();
  // Now and then a very long user name, so the password straddles any length a message cuts at.
  p.user = *rc::gen::oneOf(string_of("abcdefghijklmnopqrstuvwxyz0123456789._-", 1, 12),
                           string_of("abcdefghijklmnopqrstuvwxyz0123456789._-", 150, 420));
  p.has_password = p.has_user && *rc::gen::arbitrary<bool>();
  p.password = *password_gen();
  p.hosts = *host_gen();
  p.has_path = *rc::gen::arbitrary<bool>();
  p.db = *string_of("abcdefghijklmnopqrstuvwxyz0123456789_", 0, 16);
  const auto n = *rc::gen::inRange(0, 5);
  for (int i = 0; i < n; ++i) {
    if (*rc::gen::arbitrary<bool>())
      p.query.emplace_back(*rc::gen::elementOf(casecore_pg_keys), std::to_string(*rc::gen::inRange(0, 100000)));
    else
      p.query.emplace_back(*rc::gen::elementOf(driver_keys), *string_of("abcdefghijklmnopqrstuvwxyz0123456789-", 1, 10));
  }
  return p;
}

std::string authority(const pg_parts& p) {
  std::string a;
  if (p.has_user) a = p.user + (p.has_password ? ":" + p.password : "") + "@";
  return a + p.hosts;
}

std::string url_of(const pg_parts& p) {
  std::string u = p.scheme + "://" + authority(p) + (p.has_path ? "/" + p.db : "");
  for (std::size_t i = 0; i < p.query.size(); ++i) u += (i ? "&" : "?") + p.query[i].first + "=" + p.query[i].second;
  return u;
}

bool is_casecore_key(const std::string& k) {
  return k == "pool_size" || k == "pool_overflow" || k == "acquire_timeout_ms" || k == "statement_timeout_ms" ||
         k == "busy_timeout_ms" || k == "synchronous" || k == "reconnect_budget_ms" || k == "mode" ||
         k == "lock_timeout_ms" || k == "pooler" || k == "schema" || k == "replicas" || k == "replica_wait_ms";
}

// Parse, mapping every outcome to "parsed" or "bad_url"; any other exception fails the property.
std::optional<casecore::database_url> parse_or_bad_url(const std::string& s, std::string* message = nullptr) {
  try {
    return casecore::parse_url(s);
  } catch (const casecore::error& e) {
    RC_ASSERT(e.code() == casecore::errc::bad_url);
    if (message) *message = e.what();
    return std::nullopt;
  }
}

std::string query_of(const pg_parts& p) {
  std::string q;
  for (std::size_t i = 0; i < p.query.size(); ++i) q += (i ? "&" : "?") + p.query[i].first + "=" + p.query[i].second;
  return q;
}

// Ways to make a well-formed URL malformed while it still carries its passwords.
std::string break_url(const pg_parts& p) {
  const std::string base = p.scheme + "://" + authority(p);
  const std::string q = query_of(p);
  switch (*rc::gen::inRange(0, 6)) {
    case 0: return base + ":99999/db" + q;                                        // port out of range
    case 1: return base + "/d%zzb" + q;                                           // bad percent escape
    case 2: return base + "/db" + (q.empty() ? "?&sslmode=require" : q + "&&x=1"); // empty query parameter
    case 3: return base + "/db" + (q.empty() ? "?sslmode" : q + "&sslmode");       // parameter without a value
    case 4: return base + " /db" + q;                                             // space after the host
    default: return base + "/d b" + q;                                            // space in the database name
  }
}

} // namespace

TEST_CASE("property: parse_url never crashes: any input parses or throws bad_url") {
  const auto r = check_property("parse_url on arbitrary and URL-shaped input", cases, [] {
    const auto prefix = *rc::gen::element<std::string>("", "postgresql://", "postgres://", "sqlite:", "sqlite://", "sqlite:///",
                                                       "POSTGRESQL://", "mysql://", "postgresql://u:p@");
    const auto tail = *rc::gen::oneOf(any_string(), string_of("abc:/@?&=%[],.0123456789 ", 0, 40));
    const auto parsed = parse_or_bad_url(prefix + tail);
    if (parsed) RC_ASSERT(parsed->scheme == "sqlite" || parsed->scheme == "postgresql");
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: well-formed PostgreSQL URLs parse into their parts and round-trip") {
  const auto r = check_property("postgresql URL parts round-trip", cases, [] {
    const auto p = make_parts();
    const auto url = url_of(p);
    const auto parsed = parse_or_bad_url(url);
    RC_ASSERT(parsed.has_value());
    RC_ASSERT(parsed->scheme == std::string("postgresql"));
    std::map<std::string, std::string> mine, driver;
    for (const auto& [k, v] : p.query) (is_casecore_key(k) ? mine : driver)[k] = v; // the last occurrence wins
    RC_ASSERT(parsed->casecore == mine);
    RC_ASSERT(parsed->driver == driver);
    RC_ASSERT(parsed->user == (p.has_user ? p.user : std::string()));
    RC_ASSERT(parsed->password == (p.has_password ? p.password : std::string()));
    RC_ASSERT(parsed->dbname == (p.has_path ? p.db : std::string()));
    std::vector<std::string> hosts;
    for (const auto& h : parsed->hosts) {
      const bool v6 = h.host.find(':') != std::string::npos;
      hosts.push_back((v6 ? "[" + h.host + "]" : h.host) + (h.port.empty() ? "" : ":" + h.port));
    }
    std::string joined;
    for (const auto& h : hosts) joined += (joined.empty() ? "" : ",") + h;
    RC_ASSERT(joined == p.hosts);
    const std::string userinfo = p.has_user ? p.user + (p.has_password ? ":***@" : "@") : "";
    RC_ASSERT(parsed->masked == "postgresql://" + userinfo + p.hosts + (p.has_path ? "/" + p.db : ""));
    RC_ASSERT(parsed->target == parsed->masked);
    // The masked form is itself a well-formed URL whose masked form is itself.
    const auto again = parse_or_bad_url(parsed->masked);
    RC_ASSERT(again.has_value());
    RC_ASSERT(again->masked == parsed->masked);
    RC_ASSERT(again->casecore.empty());
    RC_ASSERT(again->driver.empty());
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: the password never appears in the masked URL nor in an error message") {
  const auto r = check_property("no password in masked output or bad_url messages", cases, [] {
    auto p = make_parts();
    p.has_user = true;
    p.has_password = true;
    // libpq also takes the password as a query parameter.
    const auto query_password = *query_password_gen();
    const bool in_query = *rc::gen::arbitrary<bool>();
    if (in_query) p.query.emplace_back("password", query_password);
    const auto good = parse_or_bad_url(url_of(p));
    RC_ASSERT(good.has_value());
    RC_ASSERT(good->masked.find('~') == std::string::npos);
    (void)query_password;
    std::string message;
    const auto bad = break_url(p);
    RC_ASSERT(!parse_or_bad_url(bad, &message).has_value());
    // '~' starts every password and appears nowhere else: not even a cut-off piece may show.
    RC_ASSERT(message.find('~') == std::string::npos);
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: mask_secrets removes every password from text that quotes URLs") {
  const auto r = check_property("mask_secrets on text around URLs", cases, [] {
    auto p = make_parts();
    p.has_user = true;
    p.has_password = true;
    const auto query_password = *query_password_gen();
    p.query.emplace_back("password", query_password);
    const auto before = *rc::gen::element<std::string>("", "connect to ", "cannot open '", "url=\"", "failed: ");
    const auto after = *rc::gen::element<std::string>("", "' refused", "\" (retrying)", " timed out", ": 57P01");
    const auto text = before + url_of(p) + after + " and " + url_of(p);
    const auto masked = casecore::mask_secrets(text);
    RC_ASSERT(masked.find('~') == std::string::npos);
    RC_ASSERT(casecore::mask_secrets(masked) == masked); // nothing left to mask
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}

TEST_CASE("property: SQLite URLs parse into their path and casecore parameters") {
  const auto r = check_property("sqlite URL parts round-trip", cases, [] {
    const auto path = *string_of("abcdefghijklmnopqrstuvwxyz0123456789_-./", 1, 30);
    RC_PRE(path != "/" && path.rfind("//", 0) != 0);
    const auto form = *rc::gen::inRange(0, 3);
    std::string url = form == 0 ? "sqlite:" + path : form == 1 ? "sqlite:///" + path : "sqlite3:" + path;
    std::map<std::string, std::string> params;
    const auto n = *rc::gen::inRange(0, 4);
    for (int i = 0; i < n; ++i) {
      const auto key = *rc::gen::element<std::string>("pool_size", "busy_timeout_ms", "synchronous", "acquire_timeout_ms");
      const auto val = key == "synchronous" ? *rc::gen::element<std::string>("full", "normal", "off", "extra")
                                            : std::to_string(*rc::gen::inRange(1, 100000));
      url += (i ? "&" : "?") + key + "=" + val;
      params[key] = val;
    }
    const auto parsed = parse_or_bad_url(url);
    RC_ASSERT(parsed.has_value());
    RC_ASSERT(parsed->scheme == std::string("sqlite"));
    RC_ASSERT(parsed->target == (form == 1 ? "/" + path : path));
    RC_ASSERT(parsed->casecore == params);
    RC_ASSERT(parsed->masked == url);
    // An unknown parameter is refused on SQLite (strict), never passed on silently.
    RC_ASSERT(!parse_or_bad_url(url + (n ? "&" : "?") + "sslmode=require").has_value());
  });
  CHECK(r.passed);
  CHECK(r.cases == cases);
}
