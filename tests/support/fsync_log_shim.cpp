// An LD_PRELOAD shim for durability tests: every fsync(fd) appends the path the descriptor refers
// to (readlink /proc/self/fd/N) as one line to the file named by CASECORE_FSYNC_LOG, then calls the
// real fsync. Lets a test check WHICH files and folders a commit made durable, on the real code.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

extern "C" int fsync(int fd) {
  using fsync_fn = int (*)(int);
  static const auto real = reinterpret_cast<fsync_fn>(dlsym(RTLD_NEXT, "fsync"));
  if (const char* log = std::getenv("CASECORE_FSYNC_LOG")) {
    char link[64];
    char path[4097];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(link, path, sizeof path - 2);
    if (n > 0) {
      path[n] = '\n';
      const int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
      if (out >= 0) {
        (void)!write(out, path, static_cast<std::size_t>(n) + 1);
        close(out);
      }
    }
  }
  return real(fd);
}
