// Streamed SHA-256 against published test vectors, and deterministic event ids.
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/testing/fixture.hpp>
#include <doctest/doctest.h>

#include <fstream>
#include <unistd.h>

using namespace casecore;

TEST_CASE("sha256 matches the FIPS 180-2 vectors, in one piece or many") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  sha256 h;
  for (int i = 0; i < 1000; ++i) h.update(std::string(1000, 'a'));
  CHECK(h.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  h.update("abc"); // finish_hex resets the object
  CHECK(h.finish_hex() == sha256_hex("abc"));
  CHECK(is_sha256_hex(sha256_hex("x")));
  CHECK_FALSE(is_sha256_hex("ABC"));
  CHECK_FALSE(is_sha256_hex(std::string(64, 'g')));
}

TEST_CASE("sha256 of a file is streamed and equals the in-memory digest") {
  const auto path = casecore::testing::temp_root() / ("casecore-hash-" + sha256_hex(std::to_string(::getpid())).substr(0, 12));
  std::string content(3 * 1024 * 1024 + 5, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7);
  std::ofstream(path, std::ios::binary).write(content.data(), static_cast<std::streamsize>(content.size()));
  std::uint64_t size = 0;
  CHECK(sha256_file_hex(path, &size) == sha256_hex(content));
  CHECK(size == content.size());
  std::filesystem::remove(path);
  CHECK_THROWS_AS(sha256_file_hex(path), not_found);
  CHECK_THROWS_AS(sha256_file_hex(casecore::testing::temp_root()), invalid_argument); // a directory
}

TEST_CASE("event ids are stable, distinct per file and record, and 32 hex digits") {
  CHECK(event_id(7, "line:12") == event_id(7, "line:12"));
  CHECK(event_id(7, "line:12") != event_id(8, "line:12"));
  CHECK(event_id(7, "line:12") != event_id(7, "line:13"));
  CHECK(event_id(1, "23") != event_id(12, "3")); // the separator keeps (file, record) unambiguous
  CHECK(event_id(7, "x").size() == 32);
}
