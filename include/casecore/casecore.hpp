// casecore/casecore.hpp — every public casecore header in one include.
//
// For quick starts and prototypes; a translation unit that includes only what it uses compiles
// faster. Excludes casecore/detail/ (internals) and casecore/testing/ (the casecore::testing kit for
// downstream tests, a separate library). The PostgreSQL headers are included when the build defines
// CASECORE_WITH_POSTGRES (targets linking casecore::postgres or casecore::casecore of a build with
// PostgreSQL get it from CMake; pkg-config's casecore.pc puts it in Cflags).
// tests/umbrella_header.cmake fails the build when a public header is missing here.
// Example:
//   #include <casecore/casecore.hpp>
//   auto db = casecore::open("sqlite:app.db");
//   casecore::migrate(db);
#pragma once

#include <casecore/backend.hpp>
#include <casecore/counter.hpp>
#include <casecore/cron.hpp>
#include <casecore/database.hpp>
#include <casecore/error.hpp>
#include <casecore/export.hpp>
#include <casecore/file_registry.hpp>
#include <casecore/hash.hpp>
#include <casecore/health.hpp>
#include <casecore/job_outputs.hpp>
#include <casecore/job_queue.hpp>
#include <casecore/job_queue_admin.hpp>
#include <casecore/leader.hpp>
#include <casecore/lease.hpp>
#include <casecore/links.hpp>
#include <casecore/log.hpp>
#include <casecore/metrics.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/ordered_list.hpp>
#include <casecore/outbox.hpp>
#include <casecore/pool.hpp>
#include <casecore/rate_limiter.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/ports/fence.hpp>
#include <casecore/ports/search_index.hpp>
#include <casecore/ports/task_transport.hpp>
#include <casecore/repository.hpp>
#include <casecore/retry.hpp>
#include <casecore/schedule.hpp>
#include <casecore/single_flight.hpp>
#include <casecore/snapshot.hpp>
#include <casecore/sqlite/search_index.hpp>
#include <casecore/sqlite/sqlite.hpp>
#include <casecore/staging.hpp>
#include <casecore/state_machine.hpp>
#include <casecore/transaction.hpp>
#include <casecore/trigger.hpp>
#include <casecore/url.hpp>
#include <casecore/value.hpp>
#include <casecore/version.hpp>
#include <casecore/worker.hpp>

#ifdef CASECORE_WITH_POSTGRES
#include <casecore/postgres/blob_store.hpp>
#include <casecore/postgres/notify_transport.hpp>
#include <casecore/postgres/postgres.hpp>
#include <casecore/postgres/search_index.hpp>
#endif
