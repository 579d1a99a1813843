// The list of every migration casecore's own features need. Each feature keeps its migrations
// beside its code (a function named <feature>_migrations in detail) and is listed here once.
#include <casecore/migration.hpp>

namespace casecore {

namespace detail {
std::vector<migration> core_migrations();      // outbox.cpp
std::vector<migration> counter_migrations();   // counter.cpp
std::vector<migration> repository_migrations();// repository.cpp (ordered lists, links)
std::vector<migration> file_migrations();      // file_registry.cpp
std::vector<migration> lease_migrations();     // lease.cpp
std::vector<migration> job_migrations();       // job_queue.cpp
std::vector<migration> job_dependency_migrations(); // job_dependencies.cpp
std::vector<migration> job_output_migrations(); // job_outputs.cpp (stage outputs; after the jobs table)
std::vector<migration> kit_migrations();       // single_flight.cpp (cross-process claims)
std::vector<migration> schedule_migrations();  // schedule.cpp (periodic jobs)
std::vector<migration> telemetry_migrations(); // metrics_database.cpp (indexes the metrics read)
std::vector<migration> rate_migrations();      // rate_limiter.cpp
} // namespace detail

std::vector<migration> casecore_migrations() {
  std::vector<migration> all;
  auto add = [&](std::vector<migration> part) { all.insert(all.end(), part.begin(), part.end()); };
  add(detail::core_migrations());
  add(detail::counter_migrations());
  add(detail::repository_migrations());
  add(detail::file_migrations());
  add(detail::lease_migrations());
  add(detail::job_migrations());
  add(detail::job_dependency_migrations());
  add(detail::job_output_migrations());
  add(detail::kit_migrations());
  add(detail::schedule_migrations());
  add(detail::telemetry_migrations());
  add(detail::rate_migrations());
  return all;
}

} // namespace casecore
