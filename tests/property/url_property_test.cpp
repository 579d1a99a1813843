// Properties of database URL parsing (casecore::parse_url): it never crashes (any input either
// parses or throws bad_url, never anything else), the password never appears in the masked form
// nor in any error message, and well-formed URLs built from known parts parse back into exactly
// those parts (and their driver URL parses to itself).
#include "property.hpp"

#include <casecore/error.hpp>
#include <casecore/url.hpp>

#include <doctest/doctest.h>

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

const std::vector<std::string> casecore_pg_keys{"pool_size", "pool_overflow", "acquire_timeout_ms", "statement_timeout_ms"};
const std::vector<std::string> driver_keys{"sslmode", "connect_timeout", "application_name", "target_session_attrs"};

rc::Gen<std::string> password_gen() {
  return rc::gen::map(rc::gen::pair(string_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1, 2), string_of("abcXYZ0123456789._~!$'()*+,;=:-", 0, 24)),
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

pg_parts make_parts() {
  pg_parts p;
  p.scheme = *rc::gen::element<std::string>("postgresql", "postgres");
  p.has_user = *rc::gen::arbitrary<bool>();
  p.user = *string_of("abcdefghijklmnopqrstuvwxyz0123456789._-", 1, 12);
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
         k == "busy_timeout_ms" || k == "synchronous";
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
    std::map<std::string, std::string> mine;
    std::string rest;
    for (const auto& [k, v] : p.query) {
      if (is_casecore_key(k)) {
        mine[k] = v; // the last occurrence wins
      } else {
        rest += (rest.empty() ? "" : "&") + k + "=" + v;
      }
    }
    RC_ASSERT(parsed->casecore == mine);
    const std::string body = authority(p) + (p.has_path ? "/" + p.db : "");
    RC_ASSERT(parsed->target == "postgresql://" + body + (rest.empty() ? "" : "?" + rest));
    const std::string masked_auth = p.has_password ? p.user + ":***@" + p.hosts : authority(p);
    RC_ASSERT(parsed->masked == "postgresql://" + masked_auth + (p.has_path ? "/" + p.db : ""));
    // The driver URL is itself a well-formed URL that parses to itself, with nothing for casecore.
    const auto again = parse_or_bad_url(parsed->target);
    RC_ASSERT(again.has_value());
    RC_ASSERT(again->target == parsed->target);
    RC_ASSERT(again->masked == parsed->masked);
    RC_ASSERT(again->casecore.empty());
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
    const auto query_password = *password_gen();
    const bool in_query = *rc::gen::arbitrary<bool>();
    if (in_query) p.query.emplace_back("password", query_password);
    const auto good = parse_or_bad_url(url_of(p));
    RC_ASSERT(good.has_value());
    RC_ASSERT(good->masked.find(p.password) == std::string::npos);
    if (in_query) RC_ASSERT(good->masked.find(query_password) == std::string::npos);
    std::string message;
    const auto bad = break_url(p);
    RC_ASSERT(!parse_or_bad_url(bad, &message).has_value());
    RC_ASSERT(message.find(p.password) == std::string::npos);
    if (in_query) RC_ASSERT(message.find(query_password) == std::string::npos);
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
