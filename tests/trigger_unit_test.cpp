#include <casecore/testing/race.hpp>
#include <casecore/trigger.hpp>
#include <doctest/doctest.h>

#include <atomic>

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
  verifier v(key, store, verify_options{std::chrono::seconds(60)});
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
