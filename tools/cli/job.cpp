// `casecore job list|show|retry|cancel|stats|pause|resume|pauses` (tools/cli/cli.hpp).
#include "cli.hpp"

#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/job_outputs.hpp>

#include <openssl/evp.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace casecore::cli {

namespace {
/// Every job state, in lifecycle order (job stats lists each, zeros included).
// (waiting and blocked, the dependency states, came later: appended so existing readers keep their order)
constexpr jobs::job_state every_state[] = {jobs::job_state::queued, jobs::job_state::paused, jobs::job_state::running,
                                           jobs::job_state::succeeded, jobs::job_state::failed, jobs::job_state::cancelled,
                                           jobs::job_state::waiting, jobs::job_state::blocked};

std::string pause_json(const jobs::pause_record& p) {
  return object({{"operation", quote(p.target.operation)}, {"concurrency_key", quote(p.target.concurrency_key)},
                 {"paused_at_us", num(p.paused_at)}, {"paused_by", quote(p.paused_by)}, {"reason", quote(p.reason)},
                 {"paused_jobs", num(p.paused_jobs)}});
}

// Stage outputs (job_outputs.hpp): JSON text as JSON; bytes as base64 under --json, and as their
// length and a hex prefix in the table.
std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string hex_prefix(std::string_view bytes, std::size_t shown = 32) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < std::min(shown, bytes.size()); ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return bytes.size() > shown ? out + "..." : out;
}

std::string output_json(const jobs::stage_output& o) {
  std::vector<std::pair<std::string, std::string>> f{{"stage", quote(o.stage)}, {"position", num(o.position)},
                                                     {"kind", quote(jobs::to_string(o.kind))}, {"size", num(o.data.size())},
                                                     {"lease_epoch", num(o.lease_epoch)}, {"written_at_us", num(o.written_at)}};
  bool raw = o.kind == jobs::output_kind::json;
  if (raw) {
    try { // stored JSON was parsed by the database; this keeps --json valid UTF-8 whatever is stored
      jobs::check_output(o.kind, o.data, o.data.size());
    } catch (const casecore::error&) {
      raw = false;
    }
  }
  if (raw) f.emplace_back("json", o.data);
  else if (o.kind == jobs::output_kind::json) f.emplace_back("text", quote(o.data));
  else f.emplace_back("base64", quote(base64(o.data)));
  return object(f);
}

std::vector<jobs::stage_output> job_outputs(database& db, std::int64_t id) {
  // A database migrated before stage outputs existed has none to show.
  if (!schema_versions(db).contains("casecore.job_outputs")) return {};
  return jobs::outputs(db, id);
}

std::string target_text(const jobs::pause_target& t) {
  std::string out;
  if (!t.operation.empty()) out += "operation " + text(t.operation);
  if (!t.concurrency_key.empty()) out += (out.empty() ? "" : ", ") + std::string("key ") + text(t.concurrency_key);
  return out;
}
} // namespace

// --- jobs ----------------------------------------------------------------------------------------

std::string stage_of(const jobs::job& j) {
  const auto at = static_cast<std::size_t>(j.current_stage);
  return at < j.stages.size() ? j.stages[at] : "done";
}

std::string job_json(const jobs::job& j) {
  std::vector<std::string> stages;
  for (const auto& s : j.stages) stages.push_back(quote(s));
  return object({{"id", num(j.id)}, {"operation", quote(j.operation)}, {"subject", quote(j.subject)},
                 {"state", quote(jobs::to_string(j.state))}, {"stages", array(stages)}, {"current_stage", num(j.current_stage)},
                 {"priority", num(j.priority)}, {"attempts", num(j.attempts)}, {"max_attempts", num(j.max_attempts)},
                 {"concurrency_key", quote(j.concurrency_key)}, {"cancel_requested", boolean(j.cancel_requested)},
                 {"lease_owner", quote(j.lease_owner)}, {"lease_epoch", num(j.lease_epoch)},
                 {"lease_expires_at_us", num(j.lease_expires_at)}, {"heartbeat_at_us", num(j.heartbeat_at)},
                 {"run_at_us", num(j.run_at)}, {"last_error", quote(j.last_error)}, {"created_at_us", num(j.created_at)},
                 {"finished_at_us", num(j.finished_at)}});
}

std::string stage_json(const jobs::stage_record& s) {
  return object({{"stage", quote(s.stage)}, {"position", num(s.position)}, {"state", quote(s.state)}, {"attempts", num(s.attempts)},
                 {"started_at_us", num(s.started_at)}, {"finished_at_us", num(s.finished_at)},
                 {"duration_us", num(s.finished_at - s.started_at)}, {"error", quote(s.error)}});
}

jobs::job existing_job(database& db, std::int64_t id) {
  auto j = jobs::get(db, id);
  if (!j) raise(errc::not_found, "job " + std::to_string(id) + " does not exist");
  return *j;
}

void print_job(const jobs::job& j, const std::vector<jobs::stage_record>& stages, const std::vector<jobs::stage_output>& outputs) {
  std::cout << "job       " << j.id << "\n"
            << "state     " << jobs::to_string(j.state) << (j.cancel_requested && j.state == jobs::job_state::running ? " (cancel requested)" : "") << "\n"
            << "operation " << text(j.operation) << "\n"
            << "subject   " << text(j.subject) << "\n"
            << "stage     " << text(stage_of(j)) << " (" << j.current_stage << "/" << j.stages.size() << ")\n"
            << "attempts  " << j.attempts << "/" << j.max_attempts << "\n"
            << "priority  " << j.priority << "\n";
  if (!j.concurrency_key.empty()) std::cout << "key       " << text(j.concurrency_key) << "\n";
  if (j.state == jobs::job_state::running)
    std::cout << "worker    " << text(j.lease_owner) << " (epoch " << j.lease_epoch << ", lease until " << iso_time(j.lease_expires_at) << ")\n";
  std::cout << "created   " << iso_time(j.created_at) << "\n"
            << "run_at    " << iso_time(j.run_at) << "\n"
            << "finished  " << iso_time(j.finished_at) << "\n";
  if (!j.last_error.empty()) std::cout << "error     " << text(j.last_error) << "\n";
  std::cout << "\n";
  print_row({"position", "stage", "state", "attempts", "started_at", "duration_ms", "error"});
  for (std::size_t i = 0; i < j.stages.size(); ++i) {
    const auto rec = std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.position == static_cast<int>(i); });
    if (rec == stages.end()) {
      print_row({num(i), j.stages[i], "pending", "0", "-", "-", ""});
      continue;
    }
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", static_cast<double>(rec->finished_at - rec->started_at) / 1000.0);
    print_row({num(i), rec->stage, rec->state, num(rec->attempts), iso_time(rec->started_at), ms, rec->error});
  }
  if (outputs.empty()) return;
  std::cout << "\n";
  print_row({"position", "stage", "kind", "size", "written_at", "output"});
  for (const auto& o : outputs)
    print_row({num(o.position), o.stage, std::string(jobs::to_string(o.kind)), num(o.data.size()), iso_time(o.written_at),
               o.kind == jobs::output_kind::json ? o.data : "hex:" + hex_prefix(o.data)});
}

void add_job(CLI::App& app, const context& ctx, action& run) {
  auto* cmd = app.add_subcommand("job", "The durable job queue");
  cmd->require_subcommand(1);
  struct args_t {
    std::string state;
    std::size_t limit = 100;
    std::int64_t id = 0;
    std::string operation, key, reason, by;
  };
  auto args = std::make_shared<args_t>();

  auto* list = cmd->add_subcommand("list", "List jobs, newest first");
  list->add_option("--state", args->state, "waiting, blocked, queued, paused, running, succeeded, failed or cancelled");
  list->add_option("--limit", args->limit, "At most this many (1..10000)")->check(strict_integer<std::size_t>())->capture_default_str();
  list->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      std::optional<jobs::job_state> state;
      if (!args->state.empty()) {
        state = jobs::state_from_string(args->state);
        if (!state) raise(errc::invalid_argument, "unknown job state '" + text(args->state) + "' (waiting, blocked, queued, paused, running, succeeded, failed, cancelled)");
      }
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto all = jobs::list(db, state, args->limit);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& j : all) items.push_back(job_json(j));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"id", "state", "stage", "attempts", "operation", "subject", "created_at", "last_error"});
      for (const auto& j : all)
        print_row({num(j.id), std::string(jobs::to_string(j.state)), stage_of(j), num(j.attempts) + "/" + num(j.max_attempts),
                   j.operation, j.subject, iso_time(j.created_at), j.last_error});
    };
  });

  auto* show = cmd->add_subcommand("show", "Show one job with its stages, timings and errors");
  show->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  show->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto j = existing_job(db, args->id);
      const auto stages = jobs::stages(db, args->id);
      const auto outputs = job_outputs(db, args->id);
      if (!ctx.json) {
        print_job(j, stages, outputs);
        return;
      }
      std::vector<std::string> items, outs;
      for (const auto& s : stages) items.push_back(stage_json(s));
      for (const auto& o : outputs) outs.push_back(output_json(o));
      std::cout << object({{"job", job_json(j)}, {"stages", array(items)}, {"outputs", array(outs)}}) << "\n";
    };
  });

  auto* retry = cmd->add_subcommand("retry", "Requeue a failed or cancelled job at the stage where it stopped");
  retry->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  retry->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      const auto j = jobs::retry(db, args->id);
      if (ctx.json) std::cout << job_json(j) << "\n";
      else std::cout << "requeued job " << j.id << " at stage " << text(stage_of(j)) << " (" << j.current_stage << "/" << j.stages.size() << ")\n";
    };
  });

  auto* cancel = cmd->add_subcommand("cancel", "Cancel a queued job, or ask a running one to stop");
  cancel->add_option("ID", args->id, "Job id")->required()->check(strict_integer<std::int64_t>());
  cancel->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      existing_job(db, args->id); // not_found before anything is written
      if (!jobs::cancel(db, args->id))
        raise(errc::invalid_transition, "job " + std::to_string(args->id) + " is " + std::string(jobs::to_string(existing_job(db, args->id).state)) +
                                            ": only queued or running jobs can be cancelled");
      const auto after = existing_job(db, args->id);
      const bool ended = after.state == jobs::job_state::cancelled;
      if (ctx.json) std::cout << object({{"id", num(after.id)}, {"state", quote(jobs::to_string(after.state))}, {"cancel_requested", boolean(after.cancel_requested)}}) << "\n";
      else if (ended) std::cout << "cancelled job " << after.id << "\n";
      else std::cout << "cancel requested for running job " << after.id << " (worker " << text(after.lease_owner)
                     << " stops at its next stage boundary or heartbeat)\n";
    };
  });

  // Pauses: durable, for every worker on every host (job_queue_admin.hpp).
  const auto target_options = [args](CLI::App* sub) {
    sub->add_option("--operation", args->operation, "The operation (every operation when only --key is given)");
    sub->add_option("--key", args->key, "The concurrency key (in every operation unless --operation is given)");
  };
  auto* pause = cmd->add_subcommand("pause", "Stop claims of an operation and/or a concurrency key on every host until resumed");
  target_options(pause);
  pause->add_option("--reason", args->reason, "Why (shown by job pauses)");
  pause->add_option("--by", args->by, "Who (default: $USER)");
  pause->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      const jobs::pause_target t{args->operation, args->key};
      if (args->by.empty())
        if (const char* user = std::getenv("USER")) args->by = user;
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      const bool created = jobs::pause(db, t, args->reason, args->by);
      if (ctx.json) std::cout << object({{"paused", boolean(true)}, {"created", boolean(created)}}) << "\n";
      else std::cout << (created ? "paused " : "already paused: ") << target_text(t) << "\n";
    };
  });
  auto* resume = cmd->add_subcommand("resume", "Lift the pause of exactly this operation and/or key");
  target_options(resume);
  resume->callback([&ctx, &run, args] {
    run = [&ctx, args] {
      const jobs::pause_target t{args->operation, args->key};
      auto db = open_migrated(ctx, "casecore.jobs", access::write);
      const bool lifted = jobs::resume(db, t);
      if (ctx.json) std::cout << object({{"resumed", boolean(lifted)}}) << "\n";
      else std::cout << (lifted ? "resumed " : "was not paused: ") << target_text(t) << "\n";
    };
  });
  auto* paused = cmd->add_subcommand("pauses", "List the pauses in force with the jobs each holds");
  paused->callback([&ctx, &run] {
    run = [&ctx] {
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto all = jobs::pauses(db);
      if (ctx.json) {
        std::vector<std::string> items;
        for (const auto& p : all) items.push_back(pause_json(p));
        std::cout << array(items) << "\n";
        return;
      }
      print_row({"operation", "concurrency_key", "paused_jobs", "paused_at", "paused_by", "reason"});
      for (const auto& p : all)
        print_row({p.target.operation.empty() ? "*" : p.target.operation, p.target.concurrency_key.empty() ? "*" : p.target.concurrency_key,
                   num(p.paused_jobs), iso_time(p.paused_at), p.paused_by, p.reason});
    };
  });

  auto* stats = cmd->add_subcommand("stats", "Counts by state and stage, ready jobs, oldest ready age, stuck jobs");
  stats->callback([&ctx, &run] {
    run = [&ctx] {
      auto db = open_migrated(ctx, "casecore.jobs", access::read);
      const auto q = jobs::inspect(db);
      if (ctx.json) {
        // Every state, zeros included: a dashboard reads by_state.failed without checking it exists.
        std::vector<std::pair<std::string, std::string>> by_state, by_stage;
        for (auto st : every_state) {
          const auto it = q.by_state.find(std::string(jobs::to_string(st)));
          by_state.emplace_back(jobs::to_string(st), num(it == q.by_state.end() ? std::int64_t{0} : it->second));
        }
        for (const auto& [k, n] : q.active_by_stage) by_stage.emplace_back(k, num(n));
        std::vector<std::string> stuck;
        for (auto id : q.stuck) stuck.push_back(num(id));
        std::cout << object({{"by_state", object(by_state)}, {"active_by_stage", object(by_stage)}, {"ready", num(q.ready)},
                             {"oldest_ready_age_us", num(q.oldest_ready_age)}, {"stuck", array(stuck)}})
                  << "\n";
        return;
      }
      for (auto st : every_state) {
        const auto it = q.by_state.find(std::string(jobs::to_string(st)));
        std::cout << "state " << jobs::to_string(st) << " " << (it == q.by_state.end() ? 0 : it->second) << "\n";
      }
      for (const auto& [k, n] : q.active_by_stage) std::cout << "stage " << text(k) << " " << n << "\n";
      char age[32];
      std::snprintf(age, sizeof age, "%.3f", static_cast<double>(q.oldest_ready_age) / 1e6);
      std::cout << "ready " << q.ready << "\noldest_ready_age_s " << age << "\nstuck";
      for (auto id : q.stuck) std::cout << " " << id;
      std::cout << "\n";
    };
  });
}

} // namespace casecore::cli
