// casecore/hash.hpp — streamed SHA-256 (OpenSSL EVP underneath, kept out of this header).
//
// sha256 hashes data fed in pieces, so a file of any size is hashed in constant memory. The
// helpers hash a string or a whole file (read in 1 MiB chunks). Thread safety: a sha256 object is
// used by one thread at a time; distinct objects and the free functions are thread-safe.
// Failure modes: an unreadable file throws not_found (missing) or invalid_argument (not a regular
// file, permission, read error); an OpenSSL failure throws errc::internal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// An incremental SHA-256 computation.
class sha256 {
public:
  sha256();
  ~sha256();
  /// Takes over the running digest of another hasher.
  sha256(sha256&&) noexcept;
  /// Takes over the running digest of another hasher.
  sha256& operator=(sha256&&) noexcept;
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;

  /// Feed bytes.
  void update(std::span<const std::byte> bytes);
  /// Feed characters.
  void update(std::string_view chars);
  /// The digest as 64 lowercase hex digits; the object is reset for a new computation.
  std::string finish_hex();

private:
  struct state;
  std::unique_ptr<state> state_;
};

/// SHA-256 of `chars` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view chars);

/// SHA-256 of a file's content, streamed; `size_out` receives its length when given.
std::string sha256_file_hex(const std::filesystem::path& path, std::uint64_t* size_out = nullptr);

/// True for 64 lowercase hex digits (the form every casecore digest takes).
bool is_sha256_hex(std::string_view text) noexcept;

} // namespace casecore

CASECORE_API_END
