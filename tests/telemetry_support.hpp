// A strict reader of Prometheus text exposition format 0.0.4 for the telemetry tests: it checks the
// syntax of every line, that HELP and TYPE come once per family before its samples, and that each
// histogram series has monotonic buckets ending in le="+Inf" equal to its _count.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace casecore::testing::prom {

using label_list = std::vector<std::pair<std::string, std::string>>;

struct sample_line {
  std::string name;
  label_list labels;
  double value = 0;
};

struct exposition {
  std::map<std::string, std::string> types; // family → type
  std::vector<sample_line> samples;

  /// The value of `name` with exactly these labels (order-insensitive).
  std::optional<double> value(const std::string& name, label_list want) const {
    std::sort(want.begin(), want.end());
    for (const auto& s : samples) {
      auto l = s.labels;
      std::sort(l.begin(), l.end());
      if (s.name == name && l == want) return s.value;
    }
    return std::nullopt;
  }
};

inline bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

/// Parse and validate; every violation is a failed CHECK naming the line.
inline exposition parse(const std::string& text) {
  exposition out;
  std::set<std::string> helped;
  REQUIRE_MESSAGE((text.empty() || text.back() == '\n'), "the text must end in a newline");
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const auto rest = line.substr(7);
      const auto sp = rest.find(' ');
      REQUIRE_MESSAGE(sp != std::string::npos, line);
      const auto fam = rest.substr(0, sp);
      if (line[2] == 'H') {
        CHECK_MESSAGE(helped.insert(fam).second, "HELP twice: " << line);
      } else {
        CHECK_MESSAGE(helped.count(fam), "TYPE before HELP: " << line);
        const auto type = rest.substr(sp + 1);
        CHECK_MESSAGE((type == "counter" || type == "gauge" || type == "histogram"), line);
        CHECK_MESSAGE(out.types.emplace(fam, type).second, "TYPE twice: " << line);
      }
      continue;
    }
    REQUIRE_MESSAGE(!line.empty(), "empty line");
    REQUIRE_MESSAGE(line[0] != '#', "unknown comment: " << line);
    sample_line s;
    std::size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    REQUIRE_MESSAGE(i > 0, "no metric name: " << line);
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const auto start = i;
        while (i < line.size() && name_char(line[i], i == start) && line[i] != ':') ++i;
        REQUIRE_MESSAGE((i > start && i + 1 < line.size() && line[i] == '=' && line[i + 1] == '"'), "bad label in: " << line);
        const auto key = line.substr(start, i - start);
        i += 2;
        std::string value;
        for (;; ++i) {
          REQUIRE_MESSAGE(i < line.size(), "unterminated label value: " << line);
          if (line[i] == '"') break;
          if (line[i] == '\\') {
            REQUIRE(i + 1 < line.size());
            const char e = line[++i];
            REQUIRE_MESSAGE((e == '\\' || e == '"' || e == 'n'), "bad escape in: " << line);
            value += e == 'n' ? '\n' : e;
          } else {
            value += line[i];
          }
        }
        ++i; // closing quote
        s.labels.emplace_back(key, value);
        if (i < line.size() && line[i] == ',') ++i;
      }
      REQUIRE_MESSAGE(i < line.size(), "unterminated labels: " << line);
      ++i; // '}'
    }
    REQUIRE_MESSAGE((i < line.size() && line[i] == ' '), "no space before the value: " << line);
    const auto v = line.substr(i + 1);
    if (v == "+Inf") s.value = INFINITY;
    else if (v == "-Inf") s.value = -INFINITY;
    else if (v == "NaN") s.value = NAN;
    else {
      char* end = nullptr;
      s.value = std::strtod(v.c_str(), &end);
      REQUIRE_MESSAGE((!v.empty() && end == v.c_str() + v.size()), "bad value: " << line);
    }
    // The family must have been announced, under its own name or its histogram base name.
    std::string fam = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!out.types.count(fam) && fam.ends_with(suffix)) {
        const auto base = fam.substr(0, fam.size() - std::string(suffix).size());
        if (out.types.count(base) && out.types[base] == "histogram") fam = base;
      }
    CHECK_MESSAGE(out.types.count(fam), "sample without TYPE: " << line);
    if (out.types.count(fam) && out.types[fam] == "counter") CHECK_MESSAGE(s.name.ends_with("_total"), "counter without _total: " << line);
    out.samples.push_back(std::move(s));
  }
  // Histograms: per series (labels without le), buckets ascending in le and count, +Inf == _count.
  for (const auto& [fam, type] : out.types) {
    if (type != "histogram") continue;
    std::map<label_list, std::vector<std::pair<double, double>>> buckets;
    std::map<label_list, double> counts;
    for (const auto& s : out.samples) {
      if (s.name == fam + "_bucket") {
        label_list rest;
        std::optional<double> le;
        for (const auto& [k, v] : s.labels)
          if (k == "le") le = v == "+Inf" ? INFINITY : std::strtod(v.c_str(), nullptr);
          else rest.emplace_back(k, v);
        REQUIRE_MESSAGE(le.has_value(), "bucket without le in " << fam);
        buckets[rest].emplace_back(*le, s.value);
      } else if (s.name == fam + "_count") {
        counts[s.labels] = s.value;
      }
    }
    for (const auto& [l, b] : buckets) {
      for (std::size_t k = 1; k < b.size(); ++k) {
        CHECK_MESSAGE(b[k].first > b[k - 1].first, fam << ": le not increasing");
        CHECK_MESSAGE(b[k].second >= b[k - 1].second, fam << ": bucket counts not monotonic");
      }
      REQUIRE_MESSAGE(!b.empty(), fam);
      CHECK_MESSAGE(std::isinf(b.back().first), fam << ": last bucket is not +Inf");
      REQUIRE_MESSAGE(counts.count(l), fam << ": no _count for a series");
      CHECK_MESSAGE(b.back().second == counts[l], fam << ": +Inf bucket != _count");
    }
  }
  return out;
}

} // namespace casecore::testing::prom
