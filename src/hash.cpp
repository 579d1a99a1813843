#include <casecore/error.hpp>
#include <casecore/hash.hpp>

#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>
#include <fcntl.h>
#include <unistd.h>

namespace casecore {

struct sha256::state {
  EVP_MD_CTX* ctx = nullptr;
  bool started = false;
  ~state() { EVP_MD_CTX_free(ctx); }
};

namespace {
void start(EVP_MD_CTX* ctx) {
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) raise(errc::internal, "EVP_DigestInit_ex(sha256) failed");
}

std::string to_hex(const unsigned char* p, unsigned n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(n) * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 0xf];
  }
  return out;
}
} // namespace

sha256::sha256() : state_(std::make_unique<state>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (!state_->ctx) raise(errc::internal, "EVP_MD_CTX_new failed");
}
sha256::~sha256() = default;
sha256::sha256(sha256&&) noexcept = default;
sha256& sha256::operator=(sha256&&) noexcept = default;

void sha256::update(std::span<const std::byte> bytes) {
  // Lazy init lets finish_hex() reset cheaply and a default-constructed hasher stay valid.
  if (!state_->started) {
    start(state_->ctx);
    state_->started = true;
  }
  if (!bytes.empty() && EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1)
    raise(errc::internal, "EVP_DigestUpdate failed");
}

void sha256::update(std::string_view chars) { update(std::as_bytes(std::span(chars.data(), chars.size()))); }

std::string sha256::finish_hex() {
  if (!state_->started) start(state_->ctx);
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  if (EVP_DigestFinal_ex(state_->ctx, md.data(), &len) != 1) raise(errc::internal, "EVP_DigestFinal_ex failed");
  state_->started = false;
  return to_hex(md.data(), len);
}

std::string sha256_hex(std::string_view chars) {
  sha256 h;
  h.update(chars);
  return h.finish_hex();
}

std::string sha256_file_hex(const std::filesystem::path& path, std::uint64_t* size_out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    raise(e == ENOENT ? errc::not_found : errc::invalid_argument, "cannot open '" + path.string() + "': " + std::strerror(e));
  }
  sha256 h;
  std::uint64_t total = 0;
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      raise(errc::invalid_argument, "cannot read '" + path.string() + "': " + std::strerror(e));
    }
    h.update(std::span(buf.data(), static_cast<std::size_t>(n)));
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (size_out) *size_out = total;
  return h.finish_hex();
}

bool is_sha256_hex(std::string_view text) noexcept {
  if (text.size() != 64) return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

} // namespace casecore
