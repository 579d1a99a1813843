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
#include <set>

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
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(text.data()),
            text.size(), md, &len))
    raise(errc::internal, "HMAC-SHA256 failed");
  return hex(md, len);
}

struct parsed_header {
  std::int64_t ts = 0;
  std::string_view nonce, sig;
};

bool parse(std::string_view header, parsed_header& out) {
  bool have_t = false;
  while (!header.empty()) {
    const auto comma = header.find(',');
    auto part = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    if (part.size() < 2 || part[1] != '=') return false;
    const auto v = part.substr(2);
    switch (part[0]) {
      case 't': {
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out.ts);
        if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return false;
        have_t = true;
        break;
      }
      case 'n': out.nonce = v; break;
      case 's': out.sig = v; break;
      default: return false;
    }
  }
  return have_t && valid_nonce(out.nonce) && out.sig.size() == 64;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

} // namespace

void check_secret(std::string_view secret) {
  if (secret.empty()) raise(errc::invalid_argument, "trigger secret is empty");
  if (secret.size() < min_secret_bytes)
    raise(errc::invalid_argument, "trigger secret is shorter than 32 bytes; use e.g. `openssl rand -hex 32`");
  if (std::set<char>(secret.begin(), secret.end()).size() < 8)
    raise(errc::invalid_argument, "trigger secret has fewer than 8 distinct characters");
  const auto n = normalise(secret);
  if (made_of_defaults(n) || n.find("changeme") != std::string::npos || n.find("yoursecret") != std::string::npos ||
      n.find("replaceme") != std::string::npos || n.starts_with("djangoinsecure"))
    raise(errc::invalid_argument, "trigger secret is a well-known default value");
}

// --- nonce stores ------------------------------------------------------------------------------

memory_nonce_store::memory_nonce_store(std::size_t capacity) : capacity_(capacity) {
  if (capacity == 0) raise(errc::invalid_argument, "nonce store capacity must be positive");
}

remembered memory_nonce_store::remember(std::string_view nonce, std::int64_t now_s, std::int64_t expires_at_s) {
  std::lock_guard lock(mutex_);
  // Forget nonces whose timestamps have left the window: they can no longer pass the time check.
  while (!by_time_.empty() && by_time_.begin()->first < now_s) {
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

remembered database_nonce_store::remember(std::string_view nonce, std::int64_t now_s, std::int64_t expires_at_s) {
  return db_.write([&](transaction& tx) {
    // An expired row with the same nonce is taken over; a live one makes the insert return nothing.
    tx.exec("DELETE FROM casecore_trigger_nonces WHERE expires_at < $1 AND nonce IN "
            "(SELECT nonce FROM casecore_trigger_nonces WHERE expires_at < $1 LIMIT 100)",
            now_s);
    return tx.exec("INSERT INTO casecore_trigger_nonces(nonce, expires_at) VALUES($1, $2) "
                   "ON CONFLICT(nonce) DO UPDATE SET expires_at = excluded.expires_at "
                   "WHERE casecore_trigger_nonces.expires_at < $3 RETURNING nonce",
                   nonce, expires_at_s, now_s)
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
  if (options_.window.count() <= 0) raise(errc::invalid_argument, "trigger replay window must be positive");
}

verdict verifier::check(std::string_view method, std::string_view path, std::string_view body, std::string_view header) {
  return check(method, path, body, header, unix_now());
}

verdict verifier::check(std::string_view method, std::string_view path, std::string_view body, std::string_view header,
                        std::int64_t now_s) {
  parsed_header h;
  if (!valid_method(method) || path.empty() || path.find('\n') != std::string_view::npos || !parse(header, h))
    return verdict::malformed;
  const std::int64_t window = options_.window.count();
  if (h.ts < now_s - window || h.ts > now_s + window) return verdict::expired;
  const std::string expected = mac(secret_, method, path, body, h.ts, h.nonce);
  if (CRYPTO_memcmp(expected.data(), h.sig.data(), expected.size()) != 0) return verdict::bad_signature;
  // Only authentic requests reach the nonce memory, so forged traffic cannot fill it.
  switch (store_->remember(h.nonce, now_s, h.ts + window)) {
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
