// casecore/value.hpp — backend-neutral SQL values, parameters and result sets.
//
// A value is NULL, a 64-bit integer, a double, text or a blob. Statement parameters are converted
// to values (never spliced into SQL text); results come back as a small materialised table.
// Reading a double as an integer is range-checked: NaN, infinities and values whose truncation does
// not fit the integer type throw errc::backend_error instead of converting (undefined behaviour in
// C++; SQLite turns an overflowing integer expression into a double).
// Thread safety: plain value types; a result is safe to read from many threads once built.
#pragma once

#include <casecore/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore {

/// Binary payload (BLOB on SQLite, BYTEA on PostgreSQL).
struct blob {
  std::vector<std::byte> bytes; ///< the payload
  /// Byte-wise equality.
  friend bool operator==(const blob&, const blob&) = default;
};

/// Explicit SQL NULL for parameters.
struct null_t {
  /// Every NULL equals every other (for tests and containers, not SQL semantics).
  friend bool operator==(null_t, null_t) = default;
};
inline constexpr null_t null{};

/// One SQL value.
using value = std::variant<null_t, std::int64_t, double, std::string, blob>;

namespace detail {
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};
[[noreturn]] void throw_bad_cast(std::string_view wanted, const value& got);
[[noreturn]] void throw_out_of_range(double got, int digits, bool is_signed);

/// `d` truncated to the integer type T, or errc::backend_error when it is NaN or does not fit.
template <class T> T double_to_integer(double d) {
  constexpr int digits = std::numeric_limits<T>::digits;                            // value bits
  constexpr double limit = 2.0 * static_cast<double>(T{1} << (digits - 1));         // 2^digits, exact
  constexpr double low = std::is_signed_v<T> ? -limit : -1.0;                      // exclusive unless signed
  const bool fits = std::is_signed_v<T> ? (d >= low && d < limit) : (d > low && d < limit); // false for NaN
  if (!fits) throw_out_of_range(d, digits, std::is_signed_v<T>);
  return static_cast<T>(d);
}
std::int64_t parse_int(std::string_view text);
double parse_double(std::string_view text);
} // namespace detail

/// Convert a C++ argument to a statement parameter.
template <class T> value to_value(const T& v) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, value>) return v;
  else if constexpr (std::is_same_v<U, null_t> || std::is_same_v<U, std::nullptr_t>) return null;
  else if constexpr (std::is_same_v<U, bool>) return std::int64_t{v ? 1 : 0};
  else if constexpr (std::is_integral_v<U>) return static_cast<std::int64_t>(v);
  else if constexpr (std::is_floating_point_v<U>) return static_cast<double>(v);
  else if constexpr (std::is_convertible_v<U, std::string_view>) return std::string(std::string_view(v));
  else if constexpr (std::is_same_v<U, blob>) return v;
  else if constexpr (detail::is_optional<U>::value) return v ? to_value(*v) : value{null};
  else if constexpr (std::is_enum_v<U>) return static_cast<std::int64_t>(v);
  else static_assert(sizeof(U) == 0, "casecore: unsupported parameter type");
}

/// Convert a result value to a C++ type (throws errc::backend_error on a mismatch or NULL).
template <class T> T from_value(const value& v) {
  if constexpr (detail::is_optional<T>::value) {
    if (std::holds_alternative<null_t>(v)) return std::nullopt;
    return from_value<typename T::value_type>(v);
  } else if constexpr (std::is_same_v<T, value>) {
    return v;
  } else if constexpr (std::is_same_v<T, bool>) {
    return from_value<std::int64_t>(v) != 0;
  } else if constexpr (std::is_integral_v<T>) {
    if (auto p = std::get_if<std::int64_t>(&v)) return static_cast<T>(*p);
    if (auto s = std::get_if<std::string>(&v)) return static_cast<T>(detail::parse_int(*s));
    if (auto d = std::get_if<double>(&v)) return detail::double_to_integer<T>(*d);
    detail::throw_bad_cast("integer", v);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (auto d = std::get_if<double>(&v)) return static_cast<T>(*d);
    if (auto p = std::get_if<std::int64_t>(&v)) return static_cast<T>(*p);
    if (auto s = std::get_if<std::string>(&v)) return static_cast<T>(detail::parse_double(*s));
    detail::throw_bad_cast("double", v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (auto s = std::get_if<std::string>(&v)) return *s;
    if (auto p = std::get_if<std::int64_t>(&v)) return std::to_string(*p);
    detail::throw_bad_cast("text", v);
  } else if constexpr (std::is_same_v<T, blob>) {
    if (auto b = std::get_if<blob>(&v)) return *b;
    if (auto s = std::get_if<std::string>(&v)) {
      blob out;
      out.bytes.resize(s->size());
      for (std::size_t i = 0; i < s->size(); ++i) out.bytes[i] = static_cast<std::byte>((*s)[i]);
      return out;
    }
    detail::throw_bad_cast("blob", v);
  } else if constexpr (std::is_enum_v<T>) {
    return static_cast<T>(from_value<std::int64_t>(v));
  } else {
    static_assert(sizeof(T) == 0, "casecore: unsupported result type");
  }
}

class result;

/// A view of one row of a result.
class row_ref {
public:
  /// Row `index` of `r` (which must outlive the view).
  row_ref(const result& r, std::size_t index) : result_(&r), index_(index) {}
  /// The raw value of column `col`.
  const value& operator[](std::size_t col) const;
  /// Column `col` converted to T (std::optional<T> for nullable columns).
  template <class T> T get(std::size_t col) const { return from_value<T>((*this)[col]); }
  /// True when column `col` is NULL.
  bool is_null(std::size_t col) const { return std::holds_alternative<null_t>((*this)[col]); }
  /// Number of columns.
  std::size_t size() const noexcept;

private:
  const result* result_;
  std::size_t index_;
};

/// A materialised result set plus the number of rows a write affected.
class result {
public:
  result() = default;
  /// A result of `columns` columns, `cells` row-major, and `affected` changed rows (adapters build it).
  result(std::size_t columns, std::vector<value> cells, std::int64_t affected)
      : columns_(columns), cells_(std::move(cells)), affected_(affected) {}
  /// Number of rows returned.
  std::size_t size() const noexcept { return columns_ ? cells_.size() / columns_ : 0; }
  /// True when no row was returned.
  bool empty() const noexcept { return size() == 0; }
  /// Number of columns.
  std::size_t columns() const noexcept { return columns_; }
  /// Rows changed by INSERT / UPDATE / DELETE.
  std::int64_t affected() const noexcept { return affected_; }
  /// Row `i`.
  row_ref operator[](std::size_t i) const { return row_ref(*this, i); }
  /// The cell at (row, col).
  const value& at(std::size_t row, std::size_t col) const { return cells_[row * columns_ + col]; }

  /// Iteration over rows.
  class iterator {
  public:
    /// Row `i` of `r`.
    iterator(const result* r, std::size_t i) : r_(r), i_(i) {}
    /// The current row.
    row_ref operator*() const { return row_ref(*r_, i_); }
    /// The next row.
    iterator& operator++() { ++i_; return *this; }
    /// Same position (of the same result).
    bool operator==(const iterator& o) const { return i_ == o.i_; }
  private:
    const result* r_;
    std::size_t i_;
  };
  /// The first row.
  iterator begin() const { return {this, 0}; }
  /// Past the last row.
  iterator end() const { return {this, size()}; }

private:
  std::size_t columns_ = 0;
  std::vector<value> cells_;
  std::int64_t affected_ = 0;
};

inline const value& row_ref::operator[](std::size_t col) const {
  if (col >= result_->columns()) raise(errc::invalid_argument, "column index out of range");
  return result_->at(index_, col);
}
inline std::size_t row_ref::size() const noexcept { return result_->columns(); }

/// Microseconds since the Unix epoch (the unit of every timestamp casecore stores).
using micros = std::int64_t;

} // namespace casecore

CASECORE_API_END
