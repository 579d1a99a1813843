#include <casecore/error.hpp>
#include <casecore/pool.hpp>
#include <casecore/url.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace casecore {

namespace {

constexpr std::array<std::string_view, 6> casecore_keys{"pool_size", "pool_overflow", "acquire_timeout_ms",
                                                        "busy_timeout_ms", "synchronous", "statement_timeout_ms"};

bool is_casecore_key(std::string_view k) {
  return std::find(casecore_keys.begin(), casecore_keys.end(), k) != casecore_keys.end();
}

// The URL as an error message may quote it: the password of the userinfo and the values of
// password parameters masked (located the way parse_postgres reads them), before truncation, so a
// malformed URL never carries its secret into a log.
std::string masked_for_message(std::string_view url) {
  std::string out(url);
  if (const auto slashes = out.find("//"); slashes != std::string::npos) {
    const auto start = slashes + 2;
    const auto stop = std::min(out.find('?', start), out.find('/', start));
    const auto end = stop == std::string::npos ? out.size() : stop;
    const auto at = end > start ? out.rfind('@', end - 1) : std::string::npos;
    if (at != std::string::npos && at >= start) {
      const auto colon = out.find(':', start);
      if (colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  if (const auto q = out.find('?'); q != std::string::npos) {
    for (std::size_t pos = q + 1; pos < out.size();) {
      const auto amp = out.find('&', pos);
      const auto item_end = amp == std::string::npos ? out.size() : amp;
      const auto item = std::string_view(out).substr(pos, item_end - pos);
      if (item.starts_with("password=") || item.starts_with("sslpassword=")) {
        const auto eq = out.find('=', pos);
        out.replace(eq + 1, item_end - eq - 1, "***");
      }
      const auto next = out.find('&', pos); // positions moved if a value was masked
      pos = next == std::string::npos ? out.size() : next + 1;
    }
  }
  return out.substr(0, 200);
}

[[noreturn]] void fail(std::string_view url, std::string_view why) {
  raise(errc::bad_url, "malformed database URL '" + masked_for_message(url) + "': " + std::string(why));
}

void check_percent_encoding(std::string_view url, std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') continue;
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
      fail(url, "bad percent escape");
  }
}

// Splits "a=b&c=d" into casecore's own keys (returned) and the rest (kept in `rest`).
std::map<std::string, std::string> split_query(std::string_view url, std::string_view query, std::string& rest, bool strict) {
  std::map<std::string, std::string> mine;
  std::size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    const auto amp = query.find('&', pos);
    const auto item = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (item.empty()) fail(url, "empty query parameter");
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) fail(url, "query parameter without key=value");
    const auto key = std::string(item.substr(0, eq));
    const auto val = std::string(item.substr(eq + 1));
    if (is_casecore_key(key)) {
      mine[key] = val;
    } else if (strict) {
      fail(url, "unknown parameter '" + key + "'");
    } else {
      if (!rest.empty()) rest += '&';
      rest += item;
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return mine;
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
  std::string ignored;
  out.casecore = split_query(url, query, ignored, true);
  out.masked = std::string(url);
  return out;
}

database_url parse_postgres(std::string_view url, std::string_view rest) {
  database_url out;
  out.scheme = "postgresql";
  if (!rest.starts_with("//")) fail(url, "expected postgresql://[user[:password]@]host[:port][/database]");
  std::string_view body = rest.substr(2);
  std::string_view query;
  if (const auto q = body.find('?'); q != std::string_view::npos) {
    query = body.substr(q + 1);
    body = body.substr(0, q);
  }
  std::string_view authority = body, path;
  if (const auto slash = body.find('/'); slash != std::string_view::npos) {
    authority = body.substr(0, slash);
    path = body.substr(slash + 1);
  }
  std::string_view userinfo, hostport = authority;
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    userinfo = authority.substr(0, at);
    hostport = authority.substr(at + 1);
    if (userinfo.empty()) fail(url, "empty user before '@'");
  }
  // Host lists (h1:p1,h2:p2) are legal for libpq; check each port.
  std::size_t start = 0;
  while (start <= hostport.size()) {
    const auto comma = hostport.find(',', start);
    const auto hp = hostport.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::string_view host = hp, port;
    if (hp.starts_with('[')) {
      const auto close = hp.find(']');
      if (close == std::string_view::npos) fail(url, "unterminated IPv6 address");
      host = hp.substr(0, close + 1);
      if (close + 1 < hp.size()) {
        if (hp[close + 1] != ':') fail(url, "garbage after IPv6 address");
        port = hp.substr(close + 2);
      }
    } else if (const auto colon = hp.find(':'); colon != std::string_view::npos) {
      host = hp.substr(0, colon);
      port = hp.substr(colon + 1);
      if (port.empty()) fail(url, "empty port");
    }
    for (char c : host)
      if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '?' || c == '#') fail(url, "invalid character in host");
    if (!port.empty()) {
      if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
        fail(url, "port must be a number");
      const int p = std::stoi(std::string(port));
      if (p < 1 || p > 65535) fail(url, "port out of range");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  for (char c : path)
    if (c == '/' || std::isspace(static_cast<unsigned char>(c))) fail(url, "invalid character in database name");
  check_percent_encoding(url, userinfo);
  check_percent_encoding(url, path);
  check_percent_encoding(url, query);
  std::string rest_query;
  out.casecore = split_query(url, query, rest_query, false);
  out.target = "postgresql://" + std::string(body) + (rest_query.empty() ? "" : "?" + rest_query);
  std::string masked_auth(authority);
  if (const auto colon = userinfo.find(':'); colon != std::string_view::npos)
    masked_auth = std::string(userinfo.substr(0, colon)) + ":***@" + std::string(hostport);
  out.masked = "postgresql://" + masked_auth + (path.empty() && body.find('/') == std::string_view::npos ? "" : "/" + std::string(path));
  return out;
}

} // namespace

database_url parse_url(std::string_view url) {
  if (url.empty()) raise(errc::bad_url, "empty database URL");
  if (url.size() > 4096) raise(errc::bad_url, "database URL longer than 4096 characters");
  for (char c : url)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) raise(errc::bad_url, "database URL contains control characters");
  const auto colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0)
    raise(errc::bad_url, "database URL '" + masked_for_message(url) + "' has no scheme (expected sqlite: or postgresql://)");
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto rest = url.substr(colon + 1);
  if (scheme == "sqlite" || scheme == "sqlite3") return parse_sqlite(url, rest);
  if (scheme == "postgresql" || scheme == "postgres") return parse_postgres(url, rest);
  raise(errc::bad_url, "unknown database URL scheme '" + scheme + "' (supported: sqlite, postgresql)");
}

std::int64_t url_param(const database_url& url, const std::string& key, std::int64_t fallback) {
  auto it = url.casecore.find(key);
  if (it == url.casecore.end()) return fallback;
  std::int64_t v = 0;
  const auto& text = it->second;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < 0)
    raise(errc::bad_url, "URL parameter " + key + " must be a non-negative integer, got '" + text + "'");
  return v;
}

void apply_pool_params(const database_url& url, pool_options& pool) {
  pool.size = static_cast<std::size_t>(url_param(url, "pool_size", static_cast<std::int64_t>(pool.size)));
  pool.overflow = static_cast<std::size_t>(url_param(url, "pool_overflow", static_cast<std::int64_t>(pool.overflow)));
  pool.acquire_timeout = std::chrono::milliseconds(url_param(url, "acquire_timeout_ms", pool.acquire_timeout.count()));
  if (pool.size == 0) raise(errc::bad_url, "pool_size must be at least 1");
}

} // namespace casecore
