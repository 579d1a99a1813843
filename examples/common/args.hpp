// examples/common/args.hpp — a tiny command-line reader shared by the example programs.
//
// Options are "--name value" or "--flag". Every option an example reads is declared with a default
// and a help line, so `--help` can list them; anything left over is an error (exit 2), so a typo
// never silently runs the demo with defaults. Not thread-safe: use it in main() before threads start.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace example {

/// The command line of one example program.
class args {
public:
  /// Wrap argv; `usage` is the one-line description printed by --help.
  args(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) words_.emplace_back(argv[i]);
    used_.assign(words_.size(), false);
    help_ = take_flag("--help") || take_flag("-h");
  }

  /// The value of `--name value`, or `fallback`.
  std::string text(const char* name, std::string fallback, const char* help) {
    note(name, "VALUE", fallback, help);
    for (std::size_t i = 0; i < words_.size(); ++i) {
      if (used_[i] || words_[i] != name) continue;
      if (i + 1 >= words_.size()) fail(std::string(name) + " needs a value");
      used_[i] = used_[i + 1] = true;
      return words_[i + 1];
    }
    return fallback;
  }
  /// The integer value of `--name N` (within [lo, hi]), or `fallback`.
  long number(const char* name, long fallback, long lo, long hi, const char* help) {
    const auto s = text(name, std::to_string(fallback), help);
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v < lo || v > hi)
      fail(std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  /// True when `--name` is present.
  bool flag(const char* name, const char* help) {
    note(name, "", "", help);
    return take_flag(name);
  }

  /// Print help and exit 0 when --help was given; exit 2 on an unknown option.
  void finish() {
    if (help_) {
      std::printf("%s\n\noptions:\n%s", usage_.c_str(), listing_.c_str());
      std::exit(0);
    }
    for (std::size_t i = 0; i < words_.size(); ++i)
      if (!used_[i]) fail("unknown option '" + words_[i] + "' (try --help)");
  }

private:
  bool take_flag(const char* name) {
    for (std::size_t i = 0; i < words_.size(); ++i)
      if (!used_[i] && words_[i] == name) return used_[i] = true;
    return false;
  }
  void note(const char* name, const char* meta, const std::string& fallback, const char* help) {
    listing_ += "  " + std::string(name) + (*meta ? std::string(" ") + meta : "") + "\n      " + help;
    if (!fallback.empty()) listing_ += " (default: " + fallback + ")";
    listing_ += "\n";
  }
  [[noreturn]] static void fail(const std::string& why) {
    std::fprintf(stderr, "error: %s\n", why.c_str());
    std::exit(2);
  }

  std::string usage_;
  std::vector<std::string> words_;
  std::vector<bool> used_;
  std::string listing_;
  bool help_ = false;
};

} // namespace example
