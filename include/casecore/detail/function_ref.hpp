// casecore/detail/function_ref.hpp — a non-owning, allocation-free callable reference.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail {

template <class Sig> class function_ref;

/// Refers to a callable that outlives the call; never stores it.
template <class R, class... A> class function_ref<R(A...)> {
public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, function_ref>>>
  function_ref(F&& f) noexcept // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

private:
  void* obj_;
  R (*call_)(void*, A...);
};

} // namespace casecore::detail

CASECORE_API_END
