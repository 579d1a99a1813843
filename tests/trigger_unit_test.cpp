#include <casecore/testing/race.hpp>
#include <casecore/trigger.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <limits>
#include <set>

using namespace casecore;
using namespace casecore::trigger;

namespace {
const std::string key = "0f8e2b6a9c4d7e1f3a5b8c0d2e4f6a7b9c1d3e5f";
const std::string other_key = "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344";
constexpr std::int64_t now = 1'750'000'000;
} // namespace

TEST_CASE("trigger: a signed request verifies once") {
  signer s(key);
  verifier v(key);
  const auto header = s.sign("POST", "/cron/retrain", "{\"model\":\"awning\"}", now, "nonce-0000000000001");
  CHECK(header.starts_with("t=1750000000,n=nonce-0000000000001,s="));
  CHECK(v.check("POST", "/cron/retrain", "{\"model\":\"awning\"}", header, now + 5) == verdict::ok);
  CHECK(v.check("POST", "/cron/retrain", "{\"model\":\"awning\"}", header, now + 6) == verdict::replayed);
}

TEST_CASE("trigger: tampered body, method, path or timestamp and a wrong key are refused") {
  signer s(key);
  verifier v(key);
  const auto header = s.sign("POST", "/cron/retrain", "body", now, "nonce-0000000000002");
  CHECK(v.check("POST", "/cron/retrain", "body!", header, now) == verdict::bad_signature);
  CHECK(v.check("PUT", "/cron/retrain", "body", header, now) == verdict::bad_signature);
  CHECK(v.check("POST", "/cron/other", "body", header, now) == verdict::bad_signature);
  auto shifted = header;
  shifted.replace(2, 10, std::to_string(now + 1));
  CHECK(v.check("POST", "/cron/retrain", "body", shifted, now) == verdict::bad_signature);
  auto flipped = header;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  CHECK(v.check("POST", "/cron/retrain", "body", flipped, now) == verdict::bad_signature);
  verifier wrong(other_key);
  CHECK(wrong.check("POST", "/cron/retrain", "body", header, now) == verdict::bad_signature);
  // Refused requests did not burn the nonce: the genuine one still passes.
  CHECK(v.check("POST", "/cron/retrain", "body", header, now) == verdict::ok);
}

TEST_CASE("trigger: timestamps outside the replay window are refused") {
  signer s(key);
  verifier v(key, verify_options{std::chrono::seconds(300)});
  CHECK(v.check("GET", "/hook", "", s.sign("GET", "/hook", "", now - 301, "nonce-0000000000003"), now) == verdict::expired);
  CHECK(v.check("GET", "/hook", "", s.sign("GET", "/hook", "", now + 301, "nonce-0000000000004"), now) == verdict::expired);
  CHECK(v.check("GET", "/hook", "", s.sign("GET", "/hook", "", now - 300, "nonce-0000000000005"), now) == verdict::ok);
}

TEST_CASE("trigger: malformed headers are refused") {
  verifier v(key);
  CHECK(v.check("POST", "/x", "", "", now) == verdict::malformed);
  CHECK(v.check("POST", "/x", "", "t=abc,n=nonce-0000000000006,s=" + std::string(64, 'a'), now) == verdict::malformed);
  CHECK(v.check("POST", "/x", "", "t=1,n=short,s=" + std::string(64, 'a'), now) == verdict::malformed);
  CHECK(v.check("POST", "/x", "", "t=1,n=nonce-0000000000006,s=abc", now) == verdict::malformed);
  CHECK(v.check("post", "/x", "", "t=1,n=nonce-0000000000006,s=" + std::string(64, 'a'), now) == verdict::malformed);
  CHECK_THROWS_AS(v.verify("POST", "/x", "", "garbage"), invalid_argument);
}

TEST_CASE("trigger: empty, short and default secrets are refused") {
  CHECK_THROWS_AS(signer(""), invalid_argument);
  CHECK_THROWS_AS(verifier(""), invalid_argument);
  CHECK_THROWS_AS(signer("short-but-random-Xy7"), invalid_argument);
  CHECK_THROWS_AS(signer("changeme"), invalid_argument);
  CHECK_THROWS_AS(signer("your-secret-key"), invalid_argument);
  CHECK_THROWS_AS(signer("secretsecretsecretsecretsecretsecret"), invalid_argument);
  CHECK_THROWS_AS(signer("changeme-changeme-changeme-changeme!"), invalid_argument);
  CHECK_THROWS_AS(signer("your-secret-key-please-replace-it-now"), invalid_argument);
  CHECK_THROWS_AS(signer(std::string(40, 'a')), invalid_argument);
  CHECK_NOTHROW(signer{key});
  signer s(key);
  CHECK_THROWS_AS(s.sign("POST", "/x", "", now, "bad nonce with spaces"), invalid_argument);
  CHECK_THROWS_AS(s.sign("POST", "", "", now, "nonce-0000000000007"), invalid_argument);
  CHECK_THROWS_AS(verifier(key, std::shared_ptr<nonce_store>{}), invalid_argument);
}

TEST_CASE("trigger: a replayed nonce is accepted exactly once across concurrent verifiers") {
  signer s(key);
  verifier v(key);
  const auto header = s.sign("POST", "/cron", "x", now, "nonce-0000000000008");
  std::atomic<int> accepted{0}, replayed{0};
  casecore::testing::race(32, [&](std::size_t) {
    const auto r = v.check("POST", "/cron", "x", header, now);
    if (r == verdict::ok) ++accepted;
    if (r == verdict::replayed) ++replayed;
  });
  CHECK(accepted == 1);
  CHECK(replayed == 31);
}

TEST_CASE("trigger: the nonce memory is bounded and forgets only expired nonces") {
  auto store = std::make_shared<memory_nonce_store>(2);
  signer s(key);
  verify_options o;
  o.window = std::chrono::seconds(60);
  o.max_clock_skew = std::chrono::seconds(0); // one process, one clock
  verifier v(key, store, o);
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now, "nonce-00000000000a1"), now) == verdict::ok);
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now, "nonce-00000000000a2"), now) == verdict::ok);
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now, "nonce-00000000000a3"), now) == verdict::nonce_memory_full);
  // Once the first two are out of the window they are forgotten and there is room again.
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now + 61, "nonce-00000000000a4"), now + 61) == verdict::ok);
  CHECK(store->size() == 1);
}

TEST_CASE("trigger: sign() with a fresh nonce verifies now") {
  signer s(key);
  verifier v(key);
  const auto h = s.sign("POST", "/cron/retrain", "{}");
  CHECK_NOTHROW(v.verify("POST", "/cron/retrain", "{}", h));
  CHECK_THROWS_AS(v.verify("POST", "/cron/retrain", "{}", h), invalid_argument);
}

TEST_CASE("trigger: the nonce memory keeps a nonce for window + max_clock_skew") {
  auto store = std::make_shared<memory_nonce_store>(10);
  signer s(key);
  verify_options o;
  o.window = std::chrono::seconds(60);
  o.max_clock_skew = std::chrono::seconds(30);
  verifier v(key, store, o);
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now, "nonce-00000000000b1"), now) == verdict::ok);
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now + 85, "nonce-00000000000b2"), now + 85) == verdict::ok);
  CHECK(store->size() == 2); // b1 is kept until now + 90
  CHECK(v.check("GET", "/a", "", s.sign("GET", "/a", "", now + 91, "nonce-00000000000b3"), now + 91) == verdict::ok);
  CHECK(store->size() == 2); // b1 forgotten now
}

// Issue 16 finding 9: patterned secrets passed the old check (32+ bytes, 8+ distinct characters,
// not made only of known defaults).
TEST_CASE("trigger: patterned secrets below 128 bits are refused") {
  const std::vector<std::string> weak{
      "changemechangemechangemechangemecha",          // a default repeated and cut mid-word
      "your-secret-keyyour-secret-keyyour-sec",       // another, cut
      "Password!Password!Password!Password!",         // a password repeated
      "abcdefghabcdefghabcdefghabcdefgh",             // abcdefgh x 4
      "0123456789abcdef0123456789abcdef",             // a run, twice
      "qwertyuiopasdfghjklzxcvbnm1234567890",         // keyboard rows
      "Summer2024!Summer2024!Summer2024!",            // a season repeated
      "aaaaaaaabbbbbbbbccccccccddddddddeeeeeeee",     // runs of one character
      "correcthorsecorrecthorsecorrecthorse",         // words repeated
      "1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d1a2b3c4d",     // a short random-looking block repeated
  };
  for (const auto& w : weak) {
    CAPTURE(w);
    CHECK(secret_strength_bits(w) < 128);
    CHECK_THROWS_AS(signer{w}, invalid_argument);
    CHECK_THROWS_AS(verifier{w}, invalid_argument);
  }
}

TEST_CASE("trigger: random secrets pass; new_secret makes 64 hex digits of OS randomness") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const auto secret = new_secret();
    CHECK(secret.size() == 64);
    CHECK(secret.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(secret_strength_bits(secret) >= 200);
    CHECK_NOTHROW(signer{secret});
    seen.insert(secret);
  }
  CHECK(seen.size() == 200);
  // 40 random hex digits (160 bits) and a 32-byte base64 secret pass too.
  CHECK_NOTHROW(signer{key});
  CHECK_NOTHROW(signer{"q3Wv9+0ZkP1n/8xYbT2eLr6uHs4dGj7cMa5fNiKoQw0="});
  // The check never quotes the secret back.
  try {
    signer{"Password!Password!Password!Password!"};
  } catch (const casecore::error& e) {
    CHECK(std::string(e.what()).find("Password") == std::string::npos);
  }
}

// Issue 16 finding 12: now ± window overflowed for a huge window.
TEST_CASE("trigger: the replay window and clock skew are capped; extreme timestamps cannot overflow") {
  verify_options huge;
  huge.window = std::chrono::seconds(std::numeric_limits<std::int64_t>::max());
  CHECK_THROWS_AS(verifier(key, huge), invalid_argument);
  verify_options day;
  day.window = max_window;
  CHECK_NOTHROW(verifier(key, day));
  day.window = max_window + std::chrono::seconds(1);
  CHECK_THROWS_AS(verifier(key, day), invalid_argument);
  verify_options skew;
  skew.max_clock_skew = std::chrono::seconds(-1);
  CHECK_THROWS_AS(verifier(key, skew), invalid_argument);
  skew.max_clock_skew = max_clock_skew_limit + std::chrono::seconds(1);
  CHECK_THROWS_AS(verifier(key, skew), invalid_argument);

  verifier v(key);
  const std::string sig(64, 'a');
  for (const auto& ts : {std::string("9223372036854775807"), std::string("-9223372036854775808"), std::string("0"), std::string("-1")})
    CHECK(v.check("POST", "/x", "", "t=" + ts + ",n=nonce-0000000000099,s=" + sig, now) == verdict::expired);
  CHECK(v.check("POST", "/x", "", "t=9223372036854775808,n=nonce-0000000000099,s=" + sig, now) == verdict::malformed);
  for (const auto bad_now : {std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(), std::int64_t{0}})
    CHECK_THROWS_AS(v.check("POST", "/x", "", "t=1,n=nonce-0000000000099,s=" + sig, bad_now), invalid_argument);
}

TEST_CASE("trigger: sign() refuses a bad method, path, nonce or timestamp; a nonce store needs a capacity") {
  signer s(key);
  const auto nonce = "nonce-0000000000009";
  CHECK_THROWS_AS(s.sign("post", "/p", "b", now, nonce), invalid_argument);              // lower case
  CHECK_THROWS_AS(s.sign("", "/p", "b", now, nonce), invalid_argument);
  CHECK_THROWS_AS(s.sign(std::string(17, 'P'), "/p", "b", now, nonce), invalid_argument); // over 16 letters
  CHECK_THROWS_AS(s.sign("POST", "", "b", now, nonce), invalid_argument);
  CHECK_THROWS_AS(s.sign("POST", "/p\n/q", "b", now, nonce), invalid_argument);
  CHECK_THROWS_AS(s.sign("POST", "/p", "b", now, "short"), invalid_argument);
  CHECK_THROWS_AS(s.sign("POST", "/p", "b", 0, nonce), invalid_argument);
  CHECK_THROWS_AS(s.sign("POST", "/p", "b", -5, nonce), invalid_argument);
  CHECK(s.sign(std::string(16, 'P'), "/p", "b", now, nonce).starts_with("t="));
  CHECK_THROWS_AS(memory_nonce_store(0), invalid_argument);
}

TEST_CASE("trigger: a header must carry t, n and s exactly once, canonical, with a lower-case hex signature") {
  signer s(key);
  verifier v(key);
  const auto good = s.sign("POST", "/x", "b", now, "nonce-0000000000010");
  const auto sig = good.substr(good.find(",s=") + 3);
  const std::string n = "n=nonce-0000000000010", t = "t=" + std::to_string(now), sx = "s=" + sig;
  for (const std::string& bad : {t + "," + t + "," + n + "," + sx, t + "," + n + "," + n + "," + sx, t + "," + n + "," + sx + "," + sx,
                                 "t=0" + std::to_string(now) + "," + n + "," + sx, "t=+" + std::to_string(now) + "," + n + "," + sx,
                                 "t=," + n + "," + sx, t + "," + n, t + "," + sx, n + "," + sx, t + "," + n + "," + sx + ",",
                                 t + "," + n + ",x=1," + sx, t + "," + n + ",s=" + std::string(64, 'A'), "t" + n,
                                 t + "," + n + "," + sx + std::string(4096, ' ')}) {
    CAPTURE(bad);
    CHECK(v.check("POST", "/x", "b", bad, now) == verdict::malformed);
  }
  CHECK(v.check("POST", "/x", "b", n + "," + sx + "," + t, now) == verdict::ok); // any order, each once
}
