// casecore's logging hook (casecore/log.hpp) feeding spdlog: every event becomes one spdlog record
// at the matching level, its fields appended as key=value pairs (escaped: job operations and error
// texts are any printable text). The program then provokes one event — a handler failure — on a
// scratch SQLite database, so it runs without a server:
//   spdlog_sink [sqlite:/tmp/spdlog-demo.db]
#include <casecore/casecore.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

namespace {

spdlog::level::level_enum to_spdlog(casecore::log_level level) {
  switch (level) {
    case casecore::log_level::debug: return spdlog::level::debug;
    case casecore::log_level::info: return spdlog::level::info;
    case casecore::log_level::warn: return spdlog::level::warn;
    case casecore::log_level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

// key="value" with quotes, backslashes and control characters escaped: one event, one line.
std::string format_fields(const casecore::log_event& e) {
  std::string out;
  for (const auto& [key, value] : e.fields) {
    out += ' ';
    out += key;
    out += "=\"";
    for (unsigned char c : value) {
      if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
      else if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else out += static_cast<char>(c);
    }
    out += '"';
  }
  return out;
}

/// Install the adapter: casecore events go to `logger`.
void log_to_spdlog(std::shared_ptr<spdlog::logger> logger) {
  casecore::set_log_sink([logger = std::move(logger)](const casecore::log_event& e) {
    // spdlog may throw (a full async queue policy, a broken file sink); casecore swallows and counts it.
    logger->log(to_spdlog(e.level), "{}: {}{}", e.name, e.message, format_fields(e));
  });
}

} // namespace

int main(int argc, char** argv) {
  const std::string url = argc > 1 ? argv[1] : "sqlite:" + (std::filesystem::temp_directory_path() / "casecore-spdlog-demo.db").string();
  log_to_spdlog(spdlog::default_logger());

  auto db = casecore::open(url);
  casecore::migrate(db);

  // A handler that fails: "job.handler_failed" with the job's operation, stage and attempt.
  casecore::jobs::job_spec spec;
  spec.operation = "thumbnail";
  // A new subject per run: enqueue is idempotent per (operation, subject), so a fixed one would find
  // the first run's job (waiting out its retry back-off) and provoke nothing on a second run.
  spec.subject = "file:" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  casecore::jobs::enqueue(db, spec);
  casecore::jobs::worker_options options;
  options.owner = "demo";
  options.threads = 1;
  casecore::jobs::worker w(db, options);
  w.on_stage("run", [](casecore::jobs::job_context&) { throw std::runtime_error("image is \"corrupt\""); });
  w.run_once();
  std::printf("events dropped by the sink: %llu\n", static_cast<unsigned long long>(casecore::dropped_log_events()));

  casecore::set_log_sink(nullptr);
  return 0;
}
