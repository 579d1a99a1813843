// Issue 16 finding 6: tokens (trigger nonces, owner ids, staging folders, temporary blobs) must be
// unpredictable. What a test can and cannot prove: it can show that the generator is NOT the old
// one (an attack that recovers a seeded mt19937_64 from observed tokens and predicts the next ones
// exactly fails), that tokens are distinct and their bits look uniform. It cannot prove that a
// generator is cryptographically secure; that rests on the implementation calling getrandom(2)
// (src/token.cpp, reviewed) — the last test checks that the process really asks the kernel.
#include <casecore/detail/token.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <casecore/trigger.hpp>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

using namespace casecore;

namespace {

// mt19937_64 parameters (std::mt19937_64).
constexpr int n = 312, m = 156;
constexpr std::uint64_t matrix_a = 0xB5026F5AA96619E9ULL, upper = 0xFFFFFFFF80000000ULL, lower = 0x7FFFFFFFULL;

std::uint64_t temper(std::uint64_t y) {
  y ^= (y >> 29) & 0x5555555555555555ULL;
  y ^= (y << 17) & 0x71D67FFFEDA60000ULL;
  y ^= (y << 37) & 0xFFF7EEE000000000ULL;
  y ^= y >> 43;
  return y;
}

// Inverse of temper(): each step is undone by iterating it until every bit is fixed.
std::uint64_t untemper(std::uint64_t y) {
  auto undo_right = [](std::uint64_t v, int shift, std::uint64_t mask) {
    std::uint64_t x = v;
    for (int i = 0; i < 64 / shift + 1; ++i) x = v ^ ((x >> shift) & mask);
    return x;
  };
  auto undo_left = [](std::uint64_t v, int shift, std::uint64_t mask) {
    std::uint64_t x = v;
    for (int i = 0; i < 64 / shift + 1; ++i) x = v ^ ((x << shift) & mask);
    return x;
  };
  y = undo_right(y, 43, ~0ULL);
  y = undo_left(y, 37, 0xFFF7EEE000000000ULL);
  y = undo_left(y, 17, 0x71D67FFFEDA60000ULL);
  y = undo_right(y, 29, 0x5555555555555555ULL);
  return y;
}

// Output k+n of the generator from the untempered state words k, k+1 and k+m.
std::uint64_t next_output(std::uint64_t x0, std::uint64_t x1, std::uint64_t xm) {
  const std::uint64_t y = (x0 & upper) | (x1 & lower);
  return temper(xm ^ (y >> 1) ^ ((y & 1) ? matrix_a : 0));
}

std::uint64_t parse_hex64(const std::string& s) { return std::stoull(s, nullptr, 16); }

} // namespace

TEST_CASE("the mt19937_64 model used by the attack is right (it predicts a real mt19937_64)") {
  // Guards the attack below: if it could not predict the real generator, its failure on tokens
  // would prove nothing.
  std::mt19937_64 rng(12345);
  std::vector<std::uint64_t> out;
  for (int i = 0; i < n + 20; ++i) out.push_back(rng());
  for (int k = 0; k < 20; ++k) CHECK(next_output(untemper(out[k]), untemper(out[k + 1]), untemper(out[k + m])) == out[k + n]);
  CHECK(untemper(temper(0x0123456789abcdefULL)) == 0x0123456789abcdefULL);
}

// The old random_token() was a = rng() ^ (pid << 32), b = rng() ^ counter, printed as hex(a)hex(b):
// from 156 consecutive tokens (312 outputs) the state is known and the next tokens follow. The
// counter is unknown but only touches the low bits of b; guessing it costs nothing.
TEST_CASE("observed tokens do not predict the next ones (the seeded-mt19937_64 attack fails)") {
  const auto pid = static_cast<std::uint64_t>(::getpid());
  std::vector<std::string> tokens;
  for (int i = 0; i < n / 2 + 12; ++i) tokens.push_back(detail::random_token());
  std::vector<std::uint64_t> a, b;
  for (const auto& t : tokens) {
    REQUIRE(t.size() == 32);
    a.push_back(parse_hex64(t.substr(0, 16)) ^ (pid << 32));
    b.push_back(parse_hex64(t.substr(16)));
  }
  // Outputs: out[2i] = a[i], out[2i+1] = b[i] ^ (c0 + i). Output 312 = a[156] is predicted from
  // out[0] = a[0], out[1] = b[0] ^ c0 and out[156] = a[78]; only out[1] depends on the counter c0.
  int predicted = 0;
  for (std::uint64_t c0 = 0; c0 < (1u << 20); ++c0) {
    if (next_output(untemper(a[0]), untemper(b[0] ^ c0), untemper(a[78])) != a[156]) continue;
    // A candidate counter: check it predicts the next 10 tokens exactly.
    bool all = true;
    for (int k = 1; k <= 10 && all; ++k) {
      const int i = 156 + k; // token index; its a part is output 2i
      const auto out = [&](int j) { return j % 2 == 0 ? a[static_cast<std::size_t>(j / 2)] : b[static_cast<std::size_t>(j / 2)] ^ (c0 + static_cast<std::uint64_t>(j / 2)); };
      const int j = 2 * i;
      all = next_output(untemper(out(j - n)), untemper(out(j - n + 1)), untemper(out(j - n + m))) == a[static_cast<std::size_t>(i)];
    }
    if (all) ++predicted;
  }
  CHECK_MESSAGE(predicted == 0, "the next 10 tokens were predicted from 156 observed ones");
}

TEST_CASE("tokens are distinct, 32 hex digits, and their bits are balanced") {
  constexpr int count = 20000;
  std::set<std::string> seen;
  std::array<int, 128> ones{};
  for (int i = 0; i < count; ++i) {
    const auto t = detail::random_token();
    REQUIRE(t.size() == 32);
    REQUIRE(t.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(t);
    for (int d = 0; d < 32; ++d) {
      const int v = t[static_cast<std::size_t>(d)] <= '9' ? t[static_cast<std::size_t>(d)] - '0' : t[static_cast<std::size_t>(d)] - 'a' + 10;
      for (int bit = 0; bit < 4; ++bit) ones[static_cast<std::size_t>(d * 4 + bit)] += (v >> bit) & 1;
    }
  }
  CHECK(seen.size() == count);
  // Each bit is 1 with p = 1/2: mean 10000, sd ~71. 6 sd either way (false alarm ~1e-9 per bit).
  for (int bit = 0; bit < 128; ++bit) {
    CAPTURE(bit);
    CHECK(ones[static_cast<std::size_t>(bit)] > count / 2 - 425);
    CHECK(ones[static_cast<std::size_t>(bit)] < count / 2 + 425);
  }
}

TEST_CASE("random_bytes fills large buffers (getrandom returns short reads above 256 bytes)") {
  std::vector<std::byte> buf(1 << 20, std::byte{0});
  detail::random_bytes(buf);
  std::size_t zeros = 0;
  for (auto b : buf) zeros += b == std::byte{0};
  CHECK(zeros > 3000); // ~4096 expected
  CHECK(zeros < 5300);
  std::size_t tail_zeros = 0; // the tail was filled too (expected ~4 of 1024)
  for (std::size_t i = buf.size() - 1024; i < buf.size(); ++i) tail_zeros += buf[i] == std::byte{0};
  CHECK(tail_zeros < 40);
  CHECK(detail::random_hex(7).size() == 14);
  CHECK(trigger::new_secret() != trigger::new_secret());
}

CASECORE_CHILD(token_child) {
  for (int i = 0; i < std::stoi(args.at(0)); ++i) detail::random_token();
  return 0;
}

TEST_CASE("every token is drawn from the kernel: one getrandom(2) call per token (strace)") {
  if (std::system("strace -V >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: strace is not installed");
    return;
  }
  char exe[4096];
  const auto len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  REQUIRE(len > 0);
  exe[len] = '\0';
  const auto log = casecore::testing::temp_root() / ("casecore-strace-" + detail::random_token().substr(0, 12));
  const std::string cmd = "strace -f -qq -e trace=getrandom -o '" + log.string() + "' '" + exe + "' --casecore-child=token_child 1000";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    MESSAGE("skipped: strace could not trace a child here (ptrace not permitted?)");
    std::remove(log.c_str());
    return;
  }
  std::ifstream in(log);
  int calls = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("getrandom(") != std::string::npos) ++calls;
  std::remove(log.c_str());
  CHECK(calls >= 1000);
}
