// casecore/ports/fence.hpp — a fencing token presented to a port with a write.
//
// Concept: a job claim or a lease hands its holder a token that only grows, database-wide. A holder
// that was paused past its lease (GC pause, SIGSTOP, a partitioned host) still believes it holds the
// claim; only the storage it writes to can stop it. Ports that accept a fence remember, per scope,
// the highest token they accepted, and refuse a write that presents a lower one (lease_lost): the
// newer claimant's writes can never be overwritten by an older one.
// Guarantee: per scope, accepted tokens never decrease; an equal token is accepted (one holder writes
// many times). The check, the raise of the scope's mark and the write are one atomic step in every
// shipped implementation, so of two fenced writers racing on one scope the higher token's write is
// the one that stays. Token 0 means "not fenced" (accepted, and it does not move the scope's mark).
// Failure modes: lease_lost for a stale token (nothing is written); invalid_argument for a negative
// token or, with a token, a scope that is not 1..200 printable ASCII characters; unsupported from a
// host's port that did not implement fencing.
// Example:
//   casecore::fence f{"file:17", claim.fencing_token};
//   index.index(docs, f);            // refused once a newer claimant of file:17 has indexed
//   store.put(key, bytes, f);
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <string>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// What guards a port write: a scope (the job's subject, the lease's name) and the holder's token.
struct fence {
  std::string scope;      ///< what the token guards, e.g. "file:17" (1..200 printable ASCII characters)
  std::int64_t token = 0; ///< the claim's / lease's fencing token (0 = unfenced)

  /// True when this fence guards the write (token > 0).
  bool fenced() const noexcept { return token != 0; }
};

/// invalid_argument unless `f` is unfenced (token 0) or has a positive token and a valid scope.
void validate(const fence& f);

} // namespace casecore

CASECORE_API_END
