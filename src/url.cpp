#include "narrow.hpp"
#include <casecore/error.hpp>
#include <casecore/pool.hpp>
#include <casecore/url.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace casecore {

namespace {

constexpr std::array<std::string_view, 8> shared_keys{"pool_size",          "pool_overflow",  "acquire_timeout_ms",
                                                      "reconnect_budget_ms", "busy_timeout_ms", "synchronous",
                                                      "mode",               "statement_timeout_ms"};
constexpr std::array<std::string_view, 5> postgres_keys{"lock_timeout_ms", "pooler", "schema", "replicas",
                                                        "replica_wait_ms"};

// libpq connection keywords a URL may carry (PostgreSQL 15). Anything else is refused here, with a
// clear message, rather than by libpq at connect time.
constexpr std::array<std::string_view, 39> libpq_keys{
    "host",           "hostaddr",         "port",           "dbname",           "user",
    "password",       "passfile",         "channel_binding", "connect_timeout",  "client_encoding",
    "options",        "application_name", "fallback_application_name",          "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "gssencmode",
    "sslmode",        "requiressl",       "sslcompression", "sslcert",          "sslkey",
    "sslpassword",    "sslrootcert",      "sslcrl",         "sslcrldir",        "sslsni",
    "requirepeer",    "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname",
    "gsslib",         "service",          "target_session_attrs", "load_balance_hosts", "gssdelegation",
    "sslcertmode"};

template <std::size_t N> bool in(const std::array<std::string_view, N>& keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

// The printable form of one URL (not of free text): the URL is one token whatever it holds, so
// everything between the userinfo's first ':' and the URL's last '@' is masked even when a space or
// another separator sits inside the password (mask_secrets, made for free text, splits text at
// whitespace; the URL fuzzer found passwords it then missed). password= parameters are masked by
// mask_secrets afterwards. Masks more than the password on malformed input, never less.
std::string mask_url(std::string_view url) {
  std::string out(url);
  const auto scheme_colon = out.find(':');
  const auto at = out.rfind('@');
  if (scheme_colon != std::string::npos && at != std::string::npos && at > scheme_colon) {
    auto start = scheme_colon + 1;
    while (start < at && out[start] == '/') ++start;
    const auto colon = out.find(':', start);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  return mask_secrets(out);
}

// A parameter key for a message: quoted when it looks like a key (letters, digits, '_'), else not
// at all: a malformed key is URL text and may hold a password (URL fuzzer).
std::string key_for_message(std::string_view k) {
  const bool plain = !k.empty() && k.size() <= 40 &&
                     std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
  return plain ? "'" + std::string(k) + "'" : std::string("(its name is not a parameter name)");
}

[[noreturn]] void fail(std::string_view url, std::string_view why) {
  // Mask, then shorten: cutting first could leave half a password without its '@' to find it by.
  raise(errc::bad_url, "malformed database URL '" + mask_url(url).substr(0, 300) + "': " + std::string(why));
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decode `s`; bad escapes and encoded NUL bytes are refused.
std::string decode(std::string_view url, std::string_view s, std::string_view what) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 1 < s.size() ? hex_digit(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) fail(url, "bad percent escape in " + std::string(what));
    const char c = static_cast<char>(hi * 16 + lo);
    if (c == '\0') fail(url, "an encoded NUL byte in " + std::string(what));
    out += c;
    i += 2;
  }
  return out;
}

struct query_item {
  std::string key, value;
};

std::vector<query_item> split_query(std::string_view url, std::string_view query) {
  std::vector<query_item> out;
  if (query.empty()) return out;
  std::size_t pos = 0;
  for (;;) {
    const auto amp = query.find('&', pos);
    const auto item = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (item.empty()) fail(url, "empty query parameter");
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) fail(url, "query parameter without key=value");
    out.push_back({decode(url, item.substr(0, eq), "a parameter name"), decode(url, item.substr(eq + 1), "a parameter value")});
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return out;
}

bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

void check_port(std::string_view url, std::string_view port) {
  if (port.empty()) fail(url, "empty port");
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    fail(url, "port must be a number");
  const int p = std::stoi(std::string(port));
  if (p < 1 || p > 65535) fail(url, "port out of range");
}

// "h1:p1,[::1]:p2,h3" → hosts. An empty list means libpq's default host.
std::vector<url_host> parse_hosts(std::string_view url, std::string_view list) {
  std::vector<url_host> out;
  std::size_t start = 0;
  for (;;) {
    const auto comma = list.find(',', start);
    const auto hp = list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    url_host h;
    std::string_view host = hp, port;
    if (hp.starts_with('[')) {
      const auto close = hp.find(']');
      if (close == std::string_view::npos) fail(url, "unterminated IPv6 address");
      host = hp.substr(1, close - 1);
      if (close + 1 < hp.size()) {
        if (hp[close + 1] != ':') fail(url, "garbage after IPv6 address");
        port = hp.substr(close + 2);
        check_port(url, port);
      }
    } else if (const auto colon = hp.find(':'); colon != std::string_view::npos) {
      host = hp.substr(0, colon);
      port = hp.substr(colon + 1);
      check_port(url, port);
    }
    for (char c : host)
      if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '?' || c == '#' || c == '@' || c == '%' ||
          c == '[' || c == ']')
        fail(url, "invalid character in host");
    h.host = std::string(host);
    h.port = std::string(port);
    out.push_back(std::move(h));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool is_number_key(std::string_view k) { return k.ends_with("_ms") || k.starts_with("pool_"); }

void check_casecore_values(std::string_view url, const std::map<std::string, std::string>& mine) {
  for (const auto& [k, v] : mine) {
    std::int64_t n = 0;
    if (!is_number_key(k)) continue;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || p != v.data() + v.size() || n < 0 || n > (std::int64_t{1} << 40))
      fail(url, k + " must be a non-negative integer below 2^40");
  }
  if (auto it = mine.find("synchronous"); it != mine.end()) {
    auto v = it->second;
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (v != "off" && v != "normal" && v != "full" && v != "extra") fail(url, "synchronous must be off, normal, full or extra");
  }
  if (auto it = mine.find("pooler"); it != mine.end()) {
    const auto& v = it->second;
    if (v != "auto" && v != "none" && v != "session" && v != "transaction")
      fail(url, "pooler must be auto, none, session or transaction");
  }
  if (auto it = mine.find("schema"); it != mine.end() && !is_identifier(it->second))
    fail(url, "schema must be an identifier: a letter or _ then letters, digits or _ (at most 63)");
  if (auto it = mine.find("replicas"); it != mine.end()) {
    if (it->second.empty()) fail(url, "replicas is empty");
    for (const auto& h : parse_hosts(url, it->second))
      if (h.host.empty()) fail(url, "replicas lists an empty host");
  }
}

database_url parse_sqlite(std::string_view url, std::string_view rest) {
  database_url out;
  out.scheme = "sqlite";
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest == ":memory:") {
    out.target = ":memory:";
  } else if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    if (!rest.starts_with('/')) fail(url, "sqlite URLs take no host: use sqlite:///absolute/path or sqlite:relative/path");
    out.target = std::string(rest);
  } else {
    out.target = std::string(rest);
  }
  if (out.target.empty() || out.target == "/") fail(url, "empty database path");
  for (auto& [k, v] : split_query(url, query)) {
    if (!in(shared_keys, k)) fail(url, "unknown parameter " + key_for_message(k));
    out.casecore[k] = v;
  }
  check_casecore_values(url, out.casecore);
  // A file path holds no password, but text that looks like userinfo is masked all the same (the
  // printable form never shows more than mask_secrets lets through; found by the URL fuzzer).
  out.masked = mask_url(url);
  return out;
}

database_url parse_postgres(std::string_view url, std::string_view rest) {
  database_url out;
  out.scheme = "postgresql";
  if (!rest.starts_with("//")) fail(url, "expected postgresql://[user[:password]@]host[:port][,host2...][/database]");
  std::string_view body = rest.substr(2);
  // Split as libpq does: the userinfo ends at the first '@' that comes before any '/'.
  std::string_view userinfo;
  {
    const auto stop = body.find_first_of("@/");
    if (stop != std::string_view::npos && body[stop] == '@') {
      userinfo = body.substr(0, stop);
      body = body.substr(stop + 1);
      if (userinfo.empty()) fail(url, "empty user before '@'");
    }
  }
  const auto query_at = body.find('?');
  std::string_view query = query_at == std::string_view::npos ? std::string_view{} : body.substr(query_at + 1);
  const std::string_view location = body.substr(0, query_at);
  const auto slash = location.find('/');
  const std::string_view hostlist = location.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? std::string_view{} : location.substr(slash + 1);
  if (hostlist.find('@') != std::string_view::npos)
    fail(url, "an '@' inside the user or password must be percent-encoded as %40");
  if (userinfo.empty() && body.find('@') != std::string_view::npos)
    fail(url, "a '/' inside the user or password must be percent-encoded as %2F");
  if (!userinfo.empty()) {
    const auto colon = userinfo.find(':');
    out.user = decode(url, userinfo.substr(0, colon), "the user");
    if (colon != std::string_view::npos) out.password = decode(url, userinfo.substr(colon + 1), "the password");
    if (out.user.empty()) fail(url, "empty user before '@'");
  }
  out.hosts = hostlist.empty() ? std::vector<url_host>{url_host{}} : parse_hosts(url, hostlist);
  for (char c : path)
    if (c == '/' || std::isspace(static_cast<unsigned char>(c))) fail(url, "invalid character in database name");
  out.dbname = decode(url, path, "the database name");
  for (auto& [k, v] : split_query(url, query)) {
    if (in(shared_keys, k) || in(postgres_keys, k)) out.casecore[k] = v;
    else if (k == "replication") fail(url, "replication connections are not supported");
    else if (in(libpq_keys, k)) out.driver[k] = v;
    else fail(url, "unknown parameter " + key_for_message(k));
  }
  check_casecore_values(url, out.casecore);
  // The printable form: user, a masked password, hosts and database; no query (it may hold secrets).
  std::string m = "postgresql://";
  if (!out.user.empty()) m += std::string(userinfo.substr(0, userinfo.find(':'))) + (userinfo.find(':') != std::string_view::npos ? ":***@" : "@");
  m += std::string(hostlist);
  if (!path.empty() || slash != std::string_view::npos) m += "/" + std::string(path);
  out.masked = m;
  out.target = m;
  return out;
}

} // namespace

std::string mask_secrets(std::string_view text) {
  std::string out(text);
  // 1. userinfo passwords: in every whitespace-delimited token that holds an '@', whatever follows
  //    the first ':' after the scheme up to the token's last '@' is masked. Quotes do not end a
  //    token: they are legal in a password ('), so a quote-delimited URL is found inside its token.
  //    On malformed input this masks more than the password, never less.
  for (std::size_t pos = 0; pos < out.size();) {
    while (pos < out.size() && std::isspace(static_cast<unsigned char>(out[pos]))) ++pos;
    auto end = pos;
    while (end < out.size() && !std::isspace(static_cast<unsigned char>(out[end]))) ++end;
    const auto scheme_colon = out.find(':', pos);
    const auto at = out.rfind('@', end == 0 ? 0 : end - 1);
    if (scheme_colon != std::string::npos && scheme_colon < end && at != std::string::npos && at > scheme_colon && at < end) {
      auto start = scheme_colon + 1;
      while (start < at && out[start] == '/') ++start;
      const auto colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) {
        out.replace(colon + 1, at - colon - 1, "***");
        end = end - (at - colon - 1) + 3;
      }
    }
    pos = end;
  }
  // 2. password=... / sslpassword=... in queries and keyword/value strings, quoted or not.
  for (std::string_view key : {"sslpassword=", "password="}) {
    std::size_t pos = 0;
    for (;;) {
      std::string lower = out;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      pos = lower.find(key, pos);
      if (pos == std::string::npos) break;
      const auto vstart = pos + key.size();
      auto vend = vstart;
      if (vend < out.size() && out[vend] == '\'') { // libpq keyword/value quoting: '...' with \' escapes
        ++vend;
        while (vend < out.size() && out[vend] != '\'') vend += out[vend] == '\\' ? 2 : 1;
        vend = std::min(vend + 1, out.size());
      } else { // a quote inside is part of the value (legal in a URL query): only '&' or a space ends it
        while (vend < out.size() && out[vend] != '&' && !std::isspace(static_cast<unsigned char>(out[vend]))) ++vend;
      }
      if (out.compare(vstart, vend - vstart, "***") != 0) out.replace(vstart, vend - vstart, "***");
      pos = vstart + 3;
    }
  }
  return out;
}

database_url parse_url(std::string_view url) {
  if (url.empty()) raise(errc::bad_url, "empty database URL");
  if (url.size() > 4096) raise(errc::bad_url, "database URL longer than 4096 characters");
  for (char c : url)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) raise(errc::bad_url, "database URL contains control characters");
  const auto colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0)
    raise(errc::bad_url, "database URL '" + mask_url(url).substr(0, 200) + "' has no scheme (expected sqlite: or postgresql://)");
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto rest = url.substr(colon + 1);
  if (scheme == "sqlite" || scheme == "sqlite3") return parse_sqlite(url, rest);
  if (scheme == "postgresql" || scheme == "postgres") {
    // A network URL has no raw spaces (RFC 3986: percent-encode them). Refused before any message
    // quotes the URL: mask_secrets finds a password within one whitespace-delimited token, so a
    // space inside the userinfo would hide the password from it (found by the URL fuzzer). SQLite
    // URLs are file paths, where spaces are fine and no password exists.
    if (url.find(' ') != std::string_view::npos)
      raise(errc::bad_url, "PostgreSQL URL contains a space: percent-encode it (%20), also inside a password");
    return parse_postgres(url, rest);
  }
  if (scheme.size() > 20 || !std::all_of(scheme.begin(), scheme.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+'; }))
    raise(errc::bad_url, "unknown database URL scheme (supported: sqlite, postgresql)");
  raise(errc::bad_url, "unknown database URL scheme '" + scheme + "' (supported: sqlite, postgresql)");
}

std::int64_t url_param(const database_url& url, const std::string& key, std::int64_t fallback) {
  auto it = url.casecore.find(key);
  if (it == url.casecore.end()) return fallback;
  std::int64_t v = 0;
  const auto& text = it->second;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < 0 || v > (std::int64_t{1} << 40))
    raise(errc::bad_url, "URL parameter " + key + " must be a non-negative integer below 2^40, got '" +
                             mask_secrets(text.substr(0, 40)) + "'");
  return v;
}

void apply_pool_params(const database_url& url, pool_options& pool) {
  pool.size = detail::narrow<std::size_t>(url_param(url, "pool_size", detail::narrow<std::int64_t>(pool.size, "pool size")), "pool_size");
  pool.overflow = detail::narrow<std::size_t>(
      url_param(url, "pool_overflow", detail::narrow<std::int64_t>(pool.overflow, "pool overflow")), "pool_overflow");
  pool.acquire_timeout = std::chrono::milliseconds(url_param(url, "acquire_timeout_ms", pool.acquire_timeout.count()));
  if (pool.size == 0) raise(errc::bad_url, "pool_size must be at least 1");
  if (pool.size > 10000 || pool.overflow > 10000) raise(errc::bad_url, "pool_size and pool_overflow must be at most 10000");
}

} // namespace casecore
