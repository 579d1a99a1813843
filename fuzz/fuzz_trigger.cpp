// Fuzz target: signed trigger headers and the verifier, plus the secret-strength estimate.
// Invariants: check() returns a verdict (never throws) for any method, path, body and header; a
// header the signer made for exactly these inputs verifies once and then reads "replayed"; a
// header that differs from it in any byte never verifies; secret_strength_bits is finite and
// deterministic, check_secret throws only invalid_argument and never quotes the secret.
#include "fuzz_support.hpp"

#include <casecore/trigger.hpp>

#include <cmath>

using namespace casecore;
using namespace casecore::trigger;

namespace {
const std::string secret = "4b1d3c2e5f6a7980a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f809";
constexpr std::int64_t now = 1'760'000'000;
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::fields f(data, size);
  const auto method = f.next();
  const auto path = f.next();
  const auto body = f.next();
  const auto header = f.next();
  const auto candidate_secret = f.rest();

  verify_options o;
  o.window = std::chrono::seconds(300);
  verifier v(secret, std::make_shared<memory_nonce_store>(16), o);
  verdict got = verdict::malformed;
  try {
    got = v.check(method, path, body, header, now);
  } catch (...) {
    fuzz::fuzz_fail("check() threw for a request");
  }
  // Round trip: what the signer makes for these inputs verifies once, then never again.
  std::string genuine;
  try {
    genuine = signer(secret).sign(method, path, body, now, "nonce-fuzz-0000000001");
  } catch (const invalid_argument&) { // method / path the signer refuses: the verifier must refuse them too
    fuzz::require(got != verdict::ok, "the verifier accepted a request the signer refuses to sign");
  }
  if (!genuine.empty()) {
    fuzz::require(got != verdict::ok || header == genuine, "a header other than the genuine one verified");
    verifier fresh(secret, std::make_shared<memory_nonce_store>(16), o);
    fuzz::require(fresh.check(method, path, body, genuine, now) == verdict::ok, "the genuine header did not verify");
    fuzz::require(fresh.check(method, path, body, genuine, now) == verdict::replayed, "the genuine header verified twice");
  }
  // Secrets: finite, deterministic estimate; check_secret refuses with invalid_argument only.
  const double bits = secret_strength_bits(candidate_secret);
  fuzz::require(std::isfinite(bits) && bits >= 0, "strength estimate not finite");
  fuzz::require(bits == secret_strength_bits(candidate_secret), "strength estimate not deterministic");
  try {
    check_secret(candidate_secret);
    fuzz::require(bits >= 128 && candidate_secret.size() >= 32, "a weak secret was accepted");
  } catch (const invalid_argument& e) {
    if (candidate_secret.size() >= 8)
      fuzz::require(std::string_view(e.what()).find(candidate_secret) == std::string_view::npos, "the secret was quoted in an error");
  }
  return 0;
}
