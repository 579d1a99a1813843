#include "narrow.hpp"
#include <casecore/detail/token.hpp>
#include <casecore/trigger.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>
#include <vector>

namespace casecore::trigger {

std::string_view to_string(verdict v) noexcept {
  switch (v) {
    case verdict::ok: return "ok";
    case verdict::malformed: return "malformed";
    case verdict::bad_signature: return "bad_signature";
    case verdict::expired: return "expired";
    case verdict::replayed: return "replayed";
    case verdict::nonce_memory_full: return "nonce_memory_full";
  }
  return "unknown";
}

namespace {

constexpr std::size_t min_secret_bytes = 32;
constexpr std::size_t max_secret_bytes = 1024;
constexpr double min_secret_bits = 128;
// now_s beyond this (year ~36800) is a caller bug; below it, now ± window ± skew cannot overflow.
constexpr std::int64_t max_now_s = std::int64_t{1} << 40;

// Defaults seen in the wild (framework samples, tutorials, .env templates), compared after
// lower-casing and dropping everything but letters and digits.
constexpr std::array<std::string_view, 16> known_defaults{
    "changeme", "secret", "default", "password", "yoursecretkey", "yoursecret", "secretkey", "mysecret",
    "replaceme", "insecure", "test", "example", "crontoken", "cronsecret", "webhooksecret", "admin"};

std::string normalise(std::string_view s) {
  std::string out;
  for (char c : s)
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// True when `s` is only copies of known defaults and digits ("secretsecret...", "changeme123...").
bool made_of_defaults(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) { ++i; continue; }
    bool matched = false;
    for (auto d : known_defaults) {
      if (s.substr(i).starts_with(d)) { i += d.size(); matched = true; break; }
    }
    if (!matched) return false;
  }
  return true;
}

// Weak words a human reaches for, matched case-insensitively inside a secret (the defaults above
// plus the usual password-list heads). Each costs log2(list size) bits wherever it appears.
constexpr std::array<std::string_view, 30> weak_words{
    "changeme", "secret", "default", "password", "passw0rd", "yoursecret", "secretkey", "mysecret",
    "replaceme", "insecure", "example", "crontoken", "cronsecret", "webhook", "admin", "letmein",
    "welcome", "qwerty", "azerty", "dragon", "monkey", "master", "token", "django", "trigger",
    "iloveyou", "sunshine", "princess", "football", "test"};

// Keyboard rows: a run along one costs its start and length only.
constexpr std::array<std::string_view, 6> keyboard_rows{"`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./",
                                                        "azertyuiop", "qwertzuiop"};

// log2 of the alphabet the secret's characters are drawn from, judged by the classes present.
double bits_per_char(std::string_view s) {
  const bool all_hex_lower = std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  const bool all_hex_upper = std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
  if (all_hex_lower || all_hex_upper) return 4;
  bool lower = false, upper = false, digit = false, symbol = false, high = false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 'a' && c <= 'z') lower = true;
    else if (c >= 'A' && c <= 'Z') upper = true;
    else if (c >= '0' && c <= '9') digit = true;
    else if (c >= 0x20 && c < 0x7f) symbol = true;
    else high = true;
  }
  const int size = (lower ? 26 : 0) + (upper ? 26 : 0) + (digit ? 10 : 0) + (symbol ? 33 : 0) + (high ? 128 : 0);
  return std::log2(std::max(size, 2));
}

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Leetspeak letters (p4ssw0rd, S3cr3t) compared as the letters they stand for.
bool same_letter(char secret_char, char word_char) {
  const char c = lower_ascii(secret_char);
  if (c == word_char) return true;
  switch (c) {
    case '0': return word_char == 'o';
    case '1': return word_char == 'i' || word_char == 'l';
    case '3': return word_char == 'e';
    case '4': case '@': return word_char == 'a';
    case '5': case '$': return word_char == 's';
    case '7': return word_char == 't';
    default: return false;
  }
}

// Length of the longest keyboard-row run (forwards or backwards) starting at s[i], case-insensitive.
// Characters are unique within a row, so a run has one possible start per row.
std::size_t keyboard_run(std::string_view s, std::size_t i) {
  std::size_t best = 0;
  for (auto row : keyboard_rows) {
    const auto start = row.find(lower_ascii(s[i]));
    if (start == std::string_view::npos) continue;
    for (const std::ptrdiff_t dir : {1, -1}) {
      std::size_t len = 0;
      for (auto r = static_cast<std::ptrdiff_t>(start);
           i + len < s.size() && r >= 0 && r < static_cast<std::ptrdiff_t>(row.size()) && lower_ascii(s[i + len]) == row[static_cast<std::size_t>(r)];
           r += dir)
        ++len;
      best = std::max(best, len);
    }
  }
  return best;
}

// Length of the longest constant-step run (abcd, 9753, aaaa) starting at s[i].
std::size_t sequence_run(std::string_view s, std::size_t i) {
  if (i + 1 >= s.size()) return 1;
  const int step = static_cast<unsigned char>(s[i + 1]) - static_cast<unsigned char>(s[i]);
  if (step < -2 || step > 2) return 1;
  std::size_t len = 2;
  while (i + len < s.size() && static_cast<unsigned char>(s[i + len]) - static_cast<unsigned char>(s[i + len - 1]) == step) ++len;
  return len;
}

} // namespace

double secret_strength_bits(std::string_view s) {
  s = s.substr(0, max_secret_bytes);
  const std::size_t n = s.size();
  if (n == 0) return 0;
  const double literal = bits_per_char(s);
  const double word_bits = std::log2(static_cast<double>(weak_words.size())) + 1; // + case
  // best[j]: cheapest description of s[0..j). Transitions: one literal character; a repeat of an
  // earlier substring (LZ77 style: cost of naming where it starts and how long it is); a sequence;
  // a keyboard run; a weak word.
  std::vector<double> best(n + 1, 1e300);
  best[0] = 0;
  // longest_repeat[i]: longest s[i..i+L) equal to some s[k..k+L), k < i (overlap allowed), from the
  // longest-common-extension rows lce(k, i) = s[k] == s[i] ? 1 + lce(k+1, i+1) : 0.
  std::vector<std::size_t> longest_repeat(n, 0), row(n + 1, 0), next_row(n + 1, 0);
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t k = 0; k < i; ++k) {
      row[k] = s[k] == s[i] ? next_row[k + 1] + 1 : 0;
      longest_repeat[i] = std::max(longest_repeat[i], row[k]);
    }
    std::swap(row, next_row);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (best[i] >= 1e300) continue;
    auto relax = [&](std::size_t len, double cost) {
      if (len > 0 && i + len <= n) best[i + len] = std::min(best[i + len], best[i] + cost);
    };
    relax(1, literal);
    const double where = std::log2(static_cast<double>(i) + 1);
    for (std::size_t len = 3; len <= longest_repeat[i]; ++len) relax(len, where + std::log2(static_cast<double>(len)) + 1);
    const auto seq = sequence_run(s, i);
    for (std::size_t len = 3; len <= seq; ++len) relax(len, literal + std::log2(static_cast<double>(len)) + 3);
    const auto kb = keyboard_run(s, i);
    for (std::size_t len = 4; len <= kb; ++len) relax(len, 7 + std::log2(static_cast<double>(len)) + 1);
    for (auto w : weak_words) {
      if (i + w.size() > n) continue;
      bool match = true;
      bool leet = false;
      for (std::size_t k = 0; k < w.size() && match; ++k) {
        match = same_letter(s[i + k], w[k]);
        leet = leet || lower_ascii(s[i + k]) != w[k];
      }
      if (match) relax(w.size(), word_bits + (leet ? 1 : 0));
    }
  }
  return best[n];
}

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex(md, sizeof md);
}

bool valid_method(std::string_view m) {
  return !m.empty() && m.size() <= 16 && std::all_of(m.begin(), m.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool valid_nonce(std::string_view n) {
  return n.size() >= 16 && n.size() <= 128 && std::all_of(n.begin(), n.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
         });
}

std::string mac(const std::string& secret, std::string_view method, std::string_view path, std::string_view body,
                std::int64_t ts, std::string_view nonce) {
  std::string text = "casecore-trigger-v1\n";
  text += method;
  text += '\n';
  text += path;
  text += '\n';
  text += std::to_string(ts);
  text += '\n';
  text += nonce;
  text += '\n';
  text += sha256_hex(body);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), detail::narrow<int>(secret.size(), "trigger secret size"), reinterpret_cast<const unsigned char*>(text.data()),
            text.size(), md, &len))
    raise(errc::internal, "HMAC-SHA256 failed");
  return hex(md, len);
}

struct parsed_header {
  std::int64_t ts = 0;
  std::string_view nonce, sig;
};

// Strict: exactly the fields t, n and s, each once, separated by single commas; anything else
// (a trailing comma, a repeated field, an unknown one) is malformed rather than guessed at.
bool parse(std::string_view header, parsed_header& out) {
  bool have_t = false, have_n = false, have_s = false;
  if (header.size() > 4096) return false;
  for (;;) {
    const auto comma = header.find(',');
    const auto part = header.substr(0, comma);
    if (part.size() < 2 || part[1] != '=') return false;
    const auto v = part.substr(2);
    switch (part[0]) {
      case 't': {
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out.ts);
        // Canonical decimal only ("01", "-0" refused): one request, one header text.
        if (have_t || ec != std::errc{} || end != v.data() + v.size() || v.empty() || v != std::to_string(out.ts)) return false;
        have_t = true;
        break;
      }
      case 'n':
        if (have_n) return false;
        out.nonce = v;
        have_n = true;
        break;
      case 's':
        if (have_s) return false;
        out.sig = v;
        have_s = true;
        break;
      default: return false;
    }
    if (comma == std::string_view::npos) break;
    header = header.substr(comma + 1);
  }
  return have_t && have_n && have_s && valid_nonce(out.nonce) && out.sig.size() == 64 &&
         std::all_of(out.sig.begin(), out.sig.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

} // namespace

void check_secret(std::string_view secret) {
  // Messages never echo the secret.
  if (secret.empty()) raise(errc::invalid_argument, "trigger secret is empty");
  if (secret.size() < min_secret_bytes)
    raise(errc::invalid_argument, "trigger secret is shorter than 32 bytes; make one with `casecore trigger new-secret`");
  if (secret.size() > max_secret_bytes) raise(errc::invalid_argument, "trigger secret is longer than 1024 bytes");
  if (std::set<char>(secret.begin(), secret.end()).size() < 8)
    raise(errc::invalid_argument, "trigger secret has fewer than 8 distinct characters");
  const auto n = normalise(secret);
  if (made_of_defaults(n) || n.find("changeme") != std::string::npos || n.find("yoursecret") != std::string::npos ||
      n.find("replaceme") != std::string::npos || n.starts_with("djangoinsecure"))
    raise(errc::invalid_argument, "trigger secret is a well-known default value");
  if (const auto bits = secret_strength_bits(secret); bits < min_secret_bits)
    raise(errc::invalid_argument, "trigger secret is too predictable (about " + std::to_string(static_cast<int>(bits)) +
                                      " bits, need 128: repeats, sequences or common words); make one with "
                                      "`casecore trigger new-secret`");
}

std::string new_secret() { return detail::random_hex(32); }

// --- nonce stores ------------------------------------------------------------------------------

memory_nonce_store::memory_nonce_store(std::size_t capacity) : capacity_(capacity) {
  if (capacity == 0) raise(errc::invalid_argument, "nonce store capacity must be positive");
}

remembered memory_nonce_store::remember(const nonce_use& use) {
  const auto nonce = use.nonce;
  const auto expires_at_s = use.expires_at_s;
  std::lock_guard lock(mutex_);
  // Forget nonces whose timestamps have left the window: they can no longer pass the time check.
  while (!by_time_.empty() && by_time_.begin()->first < use.now_s) {
    expiry_.erase(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
  if (expiry_.contains(nonce)) return remembered::seen;
  // Evicting a live nonce would let its request be replayed: refuse instead.
  if (expiry_.size() >= capacity_) return remembered::full;
  expiry_.emplace(std::string(nonce), expires_at_s);
  by_time_.emplace(expires_at_s, std::string(nonce));
  return remembered::stored;
}

std::size_t memory_nonce_store::size() const {
  std::lock_guard lock(mutex_);
  return expiry_.size();
}

database_nonce_store::database_nonce_store(database db) : db_(std::move(db)) {}

remembered database_nonce_store::remember(const nonce_use& use) {
  return db_.write([&](transaction& tx) {
    // One clock for every verifier of the deployment: the database's. A host pruning by its own
    // clock (30 s ahead) would forget a nonce that a host behind it still accepts.
    const std::int64_t db_now_s = tx.query_one<std::int64_t>("SELECT casecore_now_us()") / 1000000;
    const std::int64_t off = use.now_s - db_now_s;
    if (off > use.max_clock_skew_s || -off > use.max_clock_skew_s)
      raise(errc::configuration, "this host's clock is " + std::to_string(off) + " s off the database clock (max_clock_skew " +
                                     std::to_string(use.max_clock_skew_s) + " s): trigger refused; synchronise the clock (NTP)");
    // An expired row with the same nonce is taken over; a live one makes the insert return nothing.
    tx.exec("DELETE FROM casecore_trigger_nonces WHERE expires_at < $1 AND nonce IN "
            "(SELECT nonce FROM casecore_trigger_nonces WHERE expires_at < $1 LIMIT 100)",
            db_now_s);
    return tx.exec("INSERT INTO casecore_trigger_nonces(nonce, expires_at) VALUES($1, $2) "
                   "ON CONFLICT(nonce) DO UPDATE SET expires_at = excluded.expires_at "
                   "WHERE casecore_trigger_nonces.expires_at < $3 RETURNING nonce",
                   use.nonce, use.expires_at_s, db_now_s)
                   .empty()
               ? remembered::seen
               : remembered::stored;
  });
}

// --- signer / verifier -------------------------------------------------------------------------

signer::signer(std::string secret) : secret_(std::move(secret)) { check_secret(secret_); }

std::string signer::sign(std::string_view method, std::string_view path, std::string_view body, std::int64_t timestamp_s,
                         std::string_view nonce) const {
  if (!valid_method(method)) raise(errc::invalid_argument, "trigger method must be 1..16 upper-case letters");
  if (path.empty() || path.find('\n') != std::string_view::npos) raise(errc::invalid_argument, "trigger path must be non-empty, one line");
  if (!valid_nonce(nonce)) raise(errc::invalid_argument, "trigger nonce must be 16..128 characters of [A-Za-z0-9_-]");
  if (timestamp_s <= 0) raise(errc::invalid_argument, "trigger timestamp must be positive");
  return "t=" + std::to_string(timestamp_s) + ",n=" + std::string(nonce) + ",s=" + mac(secret_, method, path, body, timestamp_s, nonce);
}

std::string signer::sign(std::string_view method, std::string_view path, std::string_view body) const {
  return sign(method, path, body, unix_now(), detail::random_token());
}

verifier::verifier(std::string secret, verify_options options)
    : verifier(std::move(secret), std::make_shared<memory_nonce_store>(), options) {}

verifier::verifier(std::string secret, std::shared_ptr<nonce_store> store, verify_options options)
    : secret_(std::move(secret)), store_(std::move(store)), options_(options) {
  check_secret(secret_);
  if (!store_) raise(errc::invalid_argument, "trigger verifier needs a nonce store");
  if (options_.window.count() <= 0 || options_.window > max_window)
    raise(errc::invalid_argument, "trigger replay window must be 1 s .. 24 h");
  if (options_.max_clock_skew.count() < 0 || options_.max_clock_skew > max_clock_skew_limit)
    raise(errc::invalid_argument, "trigger max_clock_skew must be 0 .. 1 h");
}

verdict verifier::check(std::string_view method, std::string_view path, std::string_view body, std::string_view header) {
  return check(method, path, body, header, unix_now());
}

verdict verifier::check(std::string_view method, std::string_view path, std::string_view body, std::string_view header,
                        std::int64_t now_s) {
  if (now_s <= 0 || now_s >= max_now_s) raise(errc::invalid_argument, "trigger check: now_s out of range");
  parsed_header h;
  if (!valid_method(method) || path.empty() || path.find('\n') != std::string_view::npos || !parse(header, h))
    return verdict::malformed;
  const std::int64_t window = options_.window.count();
  if (h.ts < now_s - window || h.ts > now_s + window) return verdict::expired;
  const std::string expected = mac(secret_, method, path, body, h.ts, h.nonce);
  if (CRYPTO_memcmp(expected.data(), h.sig.data(), expected.size()) != 0) return verdict::bad_signature;
  // Only authentic requests reach the nonce memory, so forged traffic cannot fill it.
  // Kept past the window by the skew bound: another verifier whose clock is behind may still accept
  // the timestamp. Bounded arithmetic: |h.ts - now_s| <= window here, all far below 2^62.
  const std::int64_t skew = options_.max_clock_skew.count();
  switch (store_->remember(nonce_use{h.nonce, now_s, h.ts + window + skew, skew})) {
    case remembered::stored: return verdict::ok;
    case remembered::seen: return verdict::replayed;
    case remembered::full: return verdict::nonce_memory_full;
  }
  return verdict::replayed;
}

void verifier::verify(std::string_view method, std::string_view path, std::string_view body, std::string_view header) {
  const auto v = check(method, path, body, header);
  if (v != verdict::ok) raise(errc::invalid_argument, "trigger rejected: " + std::string(to_string(v)));
}

} // namespace casecore::trigger
