// msl_check.h: the state of one launch, faults, and bounds-checked memory.
//
// A fault (an out-of-bounds or misaligned access, a divergent barrier, a
// shuffle from an inactive lane, too much threadgroup memory) is written to the
// launch's fault_record, and the thread unwinds with a C++ exception that the
// launcher (or the thread's fiber) catches; Python turns the record into
// msl_host.KernelFault. In checked mode msl_host rewrites every `device`,
// `constant` and `threadgroup` pointer type of the kernel into msl::checked<T>
// and every threadgroup array into msl::checked_array: both check each access
// against the bytes their buffer or array covers.
#pragma once

#include <algorithm>
#include <cstdarg>
#include <cstdio>

#include "msl_host.h"

namespace msl {

using metal::uint3;

enum fault_kind : int32_t {
  fault_none = 0,
  fault_bounds = 1,      // access outside a buffer or threadgroup array
  fault_misaligned = 2,  // access through a pointer not aligned for its type
  fault_barrier = 3,     // threads of a group at different barriers, or some returned
  fault_lane = 4,        // a SIMD-group function read a lane that is not active
  fault_tg_memory = 5,   // more threadgroup memory than Metal allows
  fault_other = 6,       // anything else a thread threw
  fault_budget = 7,      // a thread used up its work budget (msl_sync.h)
  fault_interrupted = 8, // SIGINT arrived during the launch (msl_sync.h)
};

// What went wrong, where; read by msl_host/launch.py (keep the two in step).
struct fault_record {
  int32_t kind;
  int32_t line;        // source line of the barrier or SIMD-group call, else 0
  int64_t index;       // element index (in the accessed type) from the buffer's first element; the budget
  int64_t first;       // valid element indices: first..last
  int64_t last;
  int64_t elem_size;   // bytes of the accessed type
  uint32_t pos[3];     // thread_position_in_grid of the faulting thread
  uint32_t group[3];   // threadgroup_position_in_grid
  uint32_t local[3];   // thread_position_in_threadgroup
  char buffer[64];     // buffer or threadgroup array
  char file[256];      // source file of `line`
  char detail[512];    // the rest of the story, as text
};

// Thrown (after the record is written) to unwind the faulting thread.
struct fault_tag {};

// Bytes a buffer covers: [base + lo, base + hi), base being the address the
// kernel receives (the first element; a strided view may reach below it).
struct region {
  const char* base;
  int64_t lo, hi;
  const char* name;
  int ndims;          // threadgroup arrays: the declared dimensions, for messages
  int64_t dims[4];
};

// The region of pointers whose origin is unknown: every access passes.
inline const region unbounded_region = {nullptr, 0, INT64_MAX, "?", 0, {}};

// One threadgroup variable of the current group.
struct tg_slot {
  char* addr;
  unsigned generation;  // the group it was allocated for
  region reg;
};

constexpr size_t tg_memory_limit = 32768;  // bytes per threadgroup on Apple GPUs

struct scheduler;

// A thread's account of work units (msl_sync.h): those not yet charged, the
// grant (at most grant_units) the kernel body's loops are counting down, and
// whether SIGINT stops its launch.
constexpr int64_t grant_units = 65536;
struct work_state {
  int64_t left;
  int64_t grant;
  bool interruptible;
};
inline work_state fresh_work(int64_t budget, bool interruptible) {
  return {budget, std::min(budget, grant_units), interruptible};
}

// Everything a running thread may need besides its own ids: one per launch,
// found through `current` (thread-local: concurrent launches don't meet).
struct launch_ctx {
  fault_record* fault;
  const region* buffers;
  int nbuffers;
  tg_slot* slots;        // one per threadgroup declaration of the kernel
  int nslots;
  char* arena;           // the current group's threadgroup memory
  size_t arena_used;
  unsigned generation;   // counts groups, so slots need no clearing
  scheduler* sched;      // fiber scheduler of the current group, if any
  int64_t budget;        // work units each thread may spend (msl_sync.h)
  work_state work;       // the running thread's, without fibers
  bool interruptible;    // SIGINT stops this launch
};

inline thread_local launch_ctx* current = nullptr;

inline void copy_text(char* dst, size_t size, const char* src) {
  std::snprintf(dst, size, "%s", src ? src : "");
}

// Start a fault record of `kind` (the thread ids are added by whoever catches).
inline fault_record& begin_fault(int32_t kind) {
  fault_record& f = *current->fault;
  std::memset(&f, 0, sizeof f);
  f.kind = kind;
  return f;
}

inline void set_detail(fault_record& f, const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(f.detail, sizeof f.detail, format, args);
  va_end(args);
}

inline void set_ids(fault_record& f, uint3 pos, uint3 group, uint3 local) {
  for (int i = 0; i < 3; ++i) {
    f.pos[i] = pos[i];
    f.group[i] = group[i];
    f.local[i] = local[i];
  }
}

// The region of a buffer or threadgroup variable containing addr (or unbounded).
inline const region* find_region(const void* addr) {
  const char* a = static_cast<const char*>(addr);
  const launch_ctx* L = current;
  if (L == nullptr) return &unbounded_region;
  for (int i = 0; i < L->nbuffers; ++i) {
    const region& r = L->buffers[i];
    if (a >= r.base + r.lo && a < r.base + r.hi) return &r;
  }
  for (int i = 0; i < L->nslots; ++i) {
    const tg_slot& s = L->slots[i];
    if (s.generation == L->generation && a >= s.addr && a < s.addr + s.reg.hi) return &s.reg;
  }
  return &unbounded_region;
}

// Record an access of `size` bytes at byte `offset` of r, outside it.
[[noreturn]] inline void access_fault(const region* r, int64_t offset, size_t size) {
  fault_record& f = begin_fault(fault_bounds);
  const int64_t n = int64_t(size);
  f.index = offset >= 0 ? offset / n : -((-offset + n - 1) / n);
  f.first = r->lo >= 0 ? (r->lo + n - 1) / n : -((-r->lo) / n);
  f.last = (r->hi >= 0 ? r->hi / n : -((-r->hi + n - 1) / n)) - 1;
  f.elem_size = n;
  copy_text(f.buffer, sizeof f.buffer, r->name);
  if (offset % n != 0) set_detail(f, "byte offset %lld", (long long)offset);
  throw fault_tag{};
}

// Record a pointer cast to a type needing `align`-byte alignment it lacks.
[[noreturn]] inline void misaligned_fault(const region* r, const void* p, size_t align) {
  fault_record& f = begin_fault(fault_misaligned);
  f.index = int64_t(uintptr_t(p) - uintptr_t(r->base));  // byte offset
  f.elem_size = int64_t(align);
  copy_text(f.buffer, sizeof f.buffer, r->name);
  throw fault_tag{};
}

// A pointer into a buffer or threadgroup variable that checks every access.
// It carries its bounds as values (first valid address, and the span of
// addresses an element may start at) so that, inlined, each access costs one
// compare. Alignment is checked where a pointer is cast to a more aligned type
// (the launcher's own pointers are aligned, and arithmetic keeps them so).
template <class T>
struct checked {
  T* p;
  uintptr_t first;
  uintptr_t span;
  const region* r;

  checked() = default;
  checked(T* ptr, const region* reg) : p(ptr), r(reg) {
    const int64_t last = reg->hi - int64_t(sizeof(T));
    first = last >= reg->lo ? uintptr_t(reg->base) + uintptr_t(reg->lo) : 0;  // 0: nothing is valid
    span = last >= reg->lo ? uintptr_t(last - reg->lo) : 0;
  }
  checked(std::nullptr_t) : checked(static_cast<T*>(nullptr), &unbounded_region) {}
  // From a plain pointer (say &out[i]): checked against the buffer it points into.
  template <class U, std::enable_if_t<std::is_convertible<U*, T*>::value, int> = 0>
  checked(U* ptr) : checked(static_cast<T*>(ptr), find_region(ptr)) {}
  template <class U, std::enable_if_t<!std::is_convertible<U*, T*>::value, int> = 0>
  explicit checked(U* ptr) : checked((T*)ptr, find_region(ptr)) {
    check_alignment<U>();
  }
  // From another checked pointer: implicit where C++ converts the pointers
  // (adding const), explicit (a cast) otherwise, e.g. (device float4*)x.
  template <class U, std::enable_if_t<std::is_convertible<U*, T*>::value, int> = 0>
  checked(const checked<U>& o) : p(o.p), first(o.first), span(o.span), r(o.r) {}
  template <class U, std::enable_if_t<!std::is_convertible<U*, T*>::value, int> = 0>
  explicit checked(const checked<U>& o) : checked((T*)o.p, o.r) {
    check_alignment<U>();
  }

  // The element i places away, after checking it lies inside the region.
  T& at(std::ptrdiff_t i) const {
    T* a = p + i;
    if (uintptr_t(a) - first > span) access_fault(r, int64_t(uintptr_t(a) - uintptr_t(r->base)), sizeof(T));
    return *a;
  }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  T& operator[](I i) const { return at(std::ptrdiff_t(i)); }
  T& operator*() const { return at(0); }
  T* operator->() const { return &at(0); }

  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  checked operator+(I i) const { return with(p + std::ptrdiff_t(i)); }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  friend checked operator+(I i, const checked& c) { return c + i; }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  checked operator-(I i) const { return with(p - std::ptrdiff_t(i)); }
  std::ptrdiff_t operator-(const checked& o) const { return p - o.p; }
  template <class I>
  checked& operator+=(I i) { p += std::ptrdiff_t(i); return *this; }
  template <class I>
  checked& operator-=(I i) { p -= std::ptrdiff_t(i); return *this; }
  checked& operator++() { ++p; return *this; }
  checked& operator--() { --p; return *this; }
  checked operator++(int) { checked old = *this; ++p; return old; }
  checked operator--(int) { checked old = *this; --p; return old; }

  bool operator==(const checked& o) const { return p == o.p; }
  bool operator!=(const checked& o) const { return p != o.p; }
  bool operator<(const checked& o) const { return p < o.p; }
  bool operator>(const checked& o) const { return p > o.p; }
  bool operator<=(const checked& o) const { return p <= o.p; }
  bool operator>=(const checked& o) const { return p >= o.p; }
  explicit operator bool() const { return p != nullptr; }
  // Passing it where a plain pointer is expected drops the check.
  operator T*() const { return p; }

 private:
  template <class U>
  void check_alignment() const {
    if (alignof(T) > alignof(U) && uintptr_t(p) % alignof(T) != 0 && p != nullptr) misaligned_fault(r, p, alignof(T));
  }
  checked with(T* q) const {
    checked c = *this;
    c.p = q;
    return c;
  }
};

// Record an index outside a threadgroup array's dimension.
[[noreturn]] inline void array_fault(const void* array, int64_t index, int64_t n, int rank) {
  const region* r = find_region(array);
  fault_record& f = begin_fault(fault_bounds);
  f.index = index;
  f.first = 0;
  f.last = n - 1;
  // Name the array and the indices before this one, e.g. tile[3].
  int used = std::snprintf(f.buffer, sizeof f.buffer, "%s", r->name);
  const int depth = r->ndims - rank;  // dimensions before this one (ndims is 0 past 4)
  if (depth > 0 && r->ndims > 0) {
    int64_t row_bytes = r->hi;
    int64_t offset = static_cast<const char*>(array) - r->base;
    for (int d = 0; d < depth; ++d) {
      row_bytes /= r->dims[d];
      used += std::snprintf(f.buffer + used, sizeof f.buffer - size_t(used), "[%lld]",
                            (long long)(offset / row_bytes));
      offset %= row_bytes;
      if (used >= int(sizeof f.buffer)) break;
    }
  }
  set_detail(f, "threadgroup array");
  throw fault_tag{};
}

// A threadgroup array whose operator[] checks the index against its dimension.
// Same size and layout as T[N]; in checked mode `threadgroup float a[4][8];`
// becomes checked_array<checked_array<float, 8>, 4>.
template <class T, size_t N>
struct checked_array {
  T elems[N];

  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  T& operator[](I i) {
    if (uint64_t(int64_t(i)) >= N) array_fault(this, int64_t(i), int64_t(N), rank());
    return elems[i];
  }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  const T& operator[](I i) const {
    if (uint64_t(int64_t(i)) >= N) array_fault(this, int64_t(i), int64_t(N), rank());
    return elems[i];
  }
  // An array decays to a pointer to its first element.
  operator checked<T>() { return checked<T>(elems, find_region(elems)); }
  operator T*() { return elems; }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  checked<T> operator+(I i) { return checked<T>(*this) + i; }
  T& operator*() { return (*this)[0]; }

  static constexpr int rank();
};

template <class T> struct array_rank : std::integral_constant<int, 0> {};
template <class T, size_t N>
struct array_rank<checked_array<T, N>> : std::integral_constant<int, 1 + array_rank<T>::value> {};
template <class T, size_t N>
constexpr int checked_array<T, N>::rank() { return array_rank<checked_array>::value; }

// The checked form of a declared type: arrays become checked_arrays.
template <class T> struct checked_type { using type = T; };
template <class T, size_t N>
struct checked_type<T[N]> { using type = checked_array<typename checked_type<T>::type, N>; };

// A threadgroup array where the kernel passes it as a pointer (msl_host
// rewrites `f(buf)` into `f(tg_decay(buf))` in checked mode), so that a helper
// template taking `threadgroup T*` deduces T as it does in Metal. Anything
// else (a local variable of the same name) passes through.
template <class T, size_t N>
inline checked<T> tg_decay(checked_array<T, N>& a) { return a; }
template <class X>
inline X&& tg_decay(X&& x) { return static_cast<X&&>(x); }

// A buffer argument of the kernel: a checked or a plain pointer.
template <bool Checked, class T>
inline auto buffer_arg(void* const* buffers, const region* regions, int i) {
  if constexpr (Checked) return checked<T>(static_cast<T*>(buffers[i]), &regions[i]);
  else return static_cast<T*>(buffers[i]);
}

// Regions of the launch's buffers from Python's (lo, hi) byte extents.
inline void make_regions(region* out, void* const* buffers, const int64_t* extents,
                         const char* const* names, int n) {
  for (int i = 0; i < n; ++i) {
    out[i] = region{static_cast<const char*>(buffers[i]), extents[2 * i], extents[2 * i + 1],
                    names[i], 0, {}};
  }
}

}  // namespace msl
