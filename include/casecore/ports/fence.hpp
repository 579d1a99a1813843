// casecore/ports/fence.hpp — a fencing token presented to a port with a write.
//
// Concept: a job claim or a lease hands its holder a token that only grows, database-wide. A holder
// that was paused past its lease (GC pause, SIGSTOP, a partitioned host) still believes it holds the
// claim; only the storage it writes to can stop it. Ports that accept a fence remember, per scope,
// the highest token they accepted, and refuse a write that presents a lower one (lease_lost): the
// newer claimant's writes can never be overwritten by an older one.
// Guarantee: per scope, accepted tokens never decrease. Token 0 means "not fenced" (accepted, and it
// does not move the scope's high-water mark).
#pragma once

#include <cstdint>
#include <string>

namespace casecore {

/// What guards a port write: a scope (the job's subject, the lease's name) and the holder's token.
struct fence {
  std::string scope;      ///< what the token guards, e.g. "file:17" (1..200 bytes)
  std::int64_t token = 0; ///< the claim's / lease's fencing token (0 = unfenced)
};

} // namespace casecore
