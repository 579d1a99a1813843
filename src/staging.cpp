#include <casecore/detail/token.hpp>
#include <casecore/error.hpp>
#include <casecore/staging.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace casecore {

namespace fs = std::filesystem;

namespace {

constexpr const char* owner_file = ".casecore-owner";

micros wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return "unknown";
  return buf.data();
}

// Written to a temporary then renamed, so a reader never sees a half-written owner file. The file
// is 0600 like everything of an import; O_NOFOLLOW: never write through a planted link.
void write_owner(const fs::path& folder, const std::string& token) {
  const auto tmp = folder / (std::string(owner_file) + ".tmp");
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) raise(errc::backend_error, "cannot write staging owner file in '" + folder.string() + "': " + std::strerror(errno));
    const auto text = token + '\n' + std::to_string(::getpid()) + '\n' + host_name() + '\n' + std::to_string(wall_now_us()) + '\n';
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok) raise(errc::backend_error, "cannot write staging owner file in '" + folder.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, folder / owner_file, ec);
  if (ec) raise(errc::backend_error, "cannot publish staging owner file: " + ec.message());
}

bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

} // namespace

staging_area staging_area::create(const fs::path& root, std::string_view import_id) {
  if (import_id.empty() || import_id.size() > 64 ||
      !std::all_of(import_id.begin(), import_id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }))
    raise(errc::invalid_argument, "import id must be 1..64 of [A-Za-z0-9_-]");
  std::error_code ec;
  // A root casecore creates is private (0700); an existing root is the host's choice (a shared one
  // still holds only 0700 import folders).
  if (root.has_parent_path()) fs::create_directories(root.parent_path(), ec);
  if (!ec && ::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) ec = std::error_code(errno, std::generic_category());
  if (ec) raise(errc::backend_error, "cannot create staging root '" + root.string() + "': " + ec.message());
  const auto token = detail::random_token();
  auto path = root / (std::string(import_id) + "." + token);
  // mkdir fails on an existing folder, so even a token collision could not make two imports share one.
  if (::mkdir(path.c_str(), 0700) != 0)
    raise(errc::backend_error, "cannot create staging folder '" + path.string() + "': " + std::strerror(errno));
  staging_area area(path, token);
  write_owner(path, token);
  return area;
}

staging_area::staging_area(staging_area&& o) noexcept : path_(std::move(o.path_)), token_(std::move(o.token_)), keep_(o.keep_) {
  o.path_.clear();
}

staging_area::~staging_area() {
  if (keep_ || path_.empty()) return;
  try {
    remove();
  } catch (...) { // a leftover folder is reclaimed later; never throw from a destructor
  }
}

void staging_area::heartbeat() {
  if (path_.empty()) raise(errc::invalid_argument, "staging area was removed");
  write_owner(path_, token_);
}

bool staging_area::remove() {
  if (path_.empty()) return false;
  std::error_code ec;
  bool removed = false;
  try {
    if (read_owner(path_).token == token_) removed = fs::remove_all(path_, ec) > 0;
  } catch (const error&) { // no owner file: not provably ours, leave it to reclaim_stale
  }
  path_.clear();
  return removed && !ec;
}

staging_owner staging_area::read_owner(const fs::path& folder) {
  std::ifstream in(folder / owner_file);
  staging_owner o;
  std::string pid, beat;
  if (!(in && std::getline(in, o.token) && std::getline(in, pid) && std::getline(in, o.host) && std::getline(in, beat)))
    raise(errc::not_found, "no readable owner file in '" + folder.string() + "'");
  try {
    o.pid = std::stol(pid);
    o.heartbeat_us = std::stoll(beat);
  } catch (const std::exception&) {
    raise(errc::not_found, "malformed owner file in '" + folder.string() + "'");
  }
  return o;
}

std::vector<fs::path> staging_area::reclaim_stale(const fs::path& root, std::chrono::milliseconds older_than) {
  if (older_than.count() < 0 || older_than > std::chrono::hours(24 * 3650)) // ms → µs must not overflow
    raise(errc::invalid_argument, "older_than must be 0 .. 10 years");
  std::vector<fs::path> out;
  std::error_code ec;
  const auto cutoff = wall_now_us() - static_cast<micros>(older_than.count()) * 1000;
  const auto here = host_name();
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code st_ec;
    if (!it->is_directory(st_ec) || it->is_symlink(st_ec)) continue; // a link is not an import's folder
    bool stale = false;
    try {
      const auto o = read_owner(it->path());
      stale = o.heartbeat_us < cutoff || (o.host == here && !process_alive(o.pid));
    } catch (const error&) {
      // No owner file yet: either a create() in progress or a crash right after mkdir; only the
      // folder's age can tell.
      struct stat st {};
      stale = ::stat(it->path().c_str(), &st) == 0 && static_cast<micros>(st.st_mtim.tv_sec) * 1000000 < cutoff;
    }
    std::error_code rm;
    if (stale && fs::remove_all(it->path(), rm) > 0 && !rm) out.push_back(it->path());
  }
  return out;
}

} // namespace casecore
