// casecore/detail/token.hpp — unpredictable identifiers: trigger nonces, owner ids, claim ids,
// staging folder and temporary blob names, generated secrets.
//
// Every byte comes from the operating system's CSPRNG (Linux getrandom(2), blocking only until the
// kernel's pool is initialised at boot), never from a seeded user-space generator: a token observed
// on the wire (a trigger nonce sent in clear) says nothing about the next one. Thread-safe and
// fork-safe (no state in the process). Failure modes: errc::internal when the kernel refuses
// (getrandom unavailable) — casecore never falls back to a weaker source.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

/// Fill `out` with bytes from the OS CSPRNG (getrandom); throws errc::internal when it cannot.
void random_bytes(std::span<std::byte> out);

/// 128 random bits from the OS CSPRNG as 32 lowercase hex digits; distinct across processes and hosts.
std::string random_token();

/// `bytes` random bytes from the OS CSPRNG as 2 × `bytes` lowercase hex digits.
std::string random_hex(std::size_t bytes);

} // namespace casecore::detail

CASECORE_API_END
