// fuzz/fuzz_support.hpp — what every casecore fuzz target shares.
//
// A target is a function LLVMFuzzerTestOneInput(data, size) that feeds the bytes to one parser or
// validator and checks its invariants. A broken invariant calls fuzz_fail(), which prints the reason
// and aborts: libFuzzer (and the replay runner used by ctest) then reports the input as a crash.
// Expected outcomes are a result or a casecore::error; anything else escaping is a crash too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace casecore::fuzz {

/// Abort with `why`: the current input broke an invariant.
[[noreturn]] inline void fuzz_fail(const char* why) {
  std::fprintf(stderr, "casecore fuzz invariant broken: %s\n", why);
  std::abort();
}

/// Check an invariant.
inline void require(bool ok, const char* why) {
  if (!ok) fuzz_fail(why);
}

/// Splits fuzz input into fields: each field is taken up to the next 0xff byte (so seeds stay
/// readable) or the end.
class fields {
public:
  fields(const std::uint8_t* data, std::size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}
  std::string_view next() {
    const auto cut = rest_.find('\xff');
    const auto out = rest_.substr(0, cut);
    rest_ = cut == std::string_view::npos ? std::string_view{} : rest_.substr(cut + 1);
    return out;
  }
  std::int64_t next_int() {
    std::uint64_t v = 0;
    for (unsigned char c : next().substr(0, 8)) v = (v << 8) | c;
    return static_cast<std::int64_t>(v);
  }
  std::string_view rest() const { return rest_; }

private:
  std::string_view rest_;
};

} // namespace casecore::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
