#include <casecore/detail/token.hpp>
#include <casecore/error.hpp>

#include <cerrno>
#include <cstring>
#include <sys/random.h>
#include <vector>

namespace casecore::detail {

void random_bytes(std::span<std::byte> out) {
  // getrandom(2) draws from the kernel CSPRNG; flags 0 blocks only until it is seeded at boot.
  // Reads above 256 bytes may return short, so loop; EINTR is retried.
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      raise(errc::internal, std::string("getrandom failed: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string random_hex(std::size_t bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::vector<std::byte> raw(bytes);
  random_bytes(raw);
  std::string out(bytes * 2, '0');
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = std::to_integer<unsigned>(raw[i]);
    out[2 * i] = hex[b >> 4];
    out[2 * i + 1] = hex[b & 15];
  }
  return out;
}

std::string random_token() { return random_hex(16); }

} // namespace casecore::detail
