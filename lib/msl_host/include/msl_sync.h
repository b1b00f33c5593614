// msl_sync.h: threadgroups on a CPU. Threadgroup memory, threads as fibers,
// barriers, SIMD-group and quad-group functions, atomics, and the loops that
// run every thread of a grid.
//
// A kernel without barriers or SIMD-group functions runs its threads one after
// the other in a plain loop. Otherwise the threads of one threadgroup run as
// cooperative fibers: each runs until it waits (at a barrier or a SIMD-group
// function) or returns. When all wait, the scheduler resolves, per SIMD group
// (32 lanes: thread_index_in_threadgroup / 32), the SIMD-group call that comes
// first in the source among those its lanes wait at, over the lanes waiting
// there (the active lanes); only when no SIMD-group call is left does it
// release a threadgroup barrier, which every thread of the group must have
// reached (else: a fault, never a hang). Memory is shared between fibers
// through plain loads and stores, so every run equals some serial order.
#pragma once

#include <sys/mman.h>

#include <csignal>
#include <cstdlib>

#include "msl_check.h"

// Fibers switch stacks with a few instructions of assembly on x86-64 Linux,
// with ucontext's swapcontext elsewhere (or where MSL_UCONTEXT is defined).
#if defined(__x86_64__) && defined(__linux__) && !defined(MSL_UCONTEXT)
#define MSL_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace metal {

enum class mem_flags : uint {
  mem_none = 0,
  mem_device = 1,
  mem_threadgroup = 2,
  mem_texture = 4,
  mem_threadgroup_imageblock = 8,
  mem_object_data = 16,
};
inline mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(uint(a) | uint(b)); }

enum memory_order {
  memory_order_relaxed,
  memory_order_acquire,
  memory_order_release,
  memory_order_acq_rel,
  memory_order_seq_cst,
};
enum thread_scope {
  thread_scope_thread,
  thread_scope_simdgroup,
  thread_scope_threadgroup,
  thread_scope_device,
};

}  // namespace metal

namespace msl {

constexpr uint simd_width = 32;

// Where a barrier or SIMD-group function is called: default arguments capture
// the caller's file and line.
struct site {
  const char* file;
  unsigned line;
  site(const char* f = __builtin_FILE(), unsigned l = __builtin_LINE()) : file(f), line(l) {}
};

// Order of a source file in the translation unit (defined by the launcher).
int file_rank(const char* file);

inline bool same_site(const site& a, const site& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}
inline bool site_before(const site& a, const site& b) {
  const int ra = file_rank(a.file), rb = file_rank(b.file);
  return ra != rb ? ra < rb : a.line < b.line;
}

// The attributes of one thread that depend on it (the rest are per launch).
struct thread_ids {
  uint3 pos;    // thread_position_in_grid
  uint3 local;  // thread_position_in_threadgroup
  uint3 group;  // threadgroup_position_in_grid
  uint3 size;   // threads_per_threadgroup (smaller at the grid's far edges)
  uint index;   // thread_index_in_threadgroup
  uint count;   // threads in this threadgroup
  work_state* work;  // its account of work units
};

// Metal's dispatchThreads as MLX calls it: threadgroups of min(threadgroup,
// grid) threads; edge groups are smaller and only positions < grid run.
struct grid_info {
  uint3 grid, dispatch, groups;
  uint dispatch_count;
  grid_info(const unsigned* g, const unsigned* tg)
      : grid(g[0], g[1], g[2]),
        dispatch(metal::min(tg[0], g[0]), metal::min(tg[1], g[1]), metal::min(tg[2], g[2])) {
    for (int i = 0; i < 3; ++i) groups[i] = dispatch[i] ? (grid[i] + dispatch[i] - 1) / dispatch[i] : 0;
    dispatch_count = dispatch.x * dispatch.y * dispatch.z;
  }
};

// ---------------------------------------------------------------- threadgroup memory

inline void new_group(launch_ctx& L) {
  ++L.generation;
  L.arena_used = 0;
}

template <class T> struct array_dims {
  static void fill(region&, int) {}
};
template <class T, size_t N> struct array_dims<T[N]> {  // (up to 4 dimensions are recorded)
  static void fill(region& r, int d) {
    if (d < 4) r.dims[d] = int64_t(N);
    r.ndims = d < 4 ? d + 1 : 0;
    if (d < 4) array_dims<T>::fill(r, d + 1);
  }
};

// The storage of threadgroup declaration `slot` (`threadgroup T name;`) in the
// current group: allocated and poisoned (all bytes 0xff: NaN, -1) by the first
// thread that reaches it, shared by the rest.
template <bool Checked, class T>
inline auto& tg_alloc(int slot, const char* name) {
  using stored = std::conditional_t<Checked, typename checked_type<T>::type, T>;
  launch_ctx& L = *current;
  tg_slot& s = L.slots[slot];
  if (s.generation != L.generation) {
    const size_t start = (L.arena_used + alignof(stored) - 1) / alignof(stored) * alignof(stored);
    if (start + sizeof(stored) > tg_memory_limit) {
      fault_record& f = begin_fault(fault_tg_memory);
      copy_text(f.buffer, sizeof f.buffer, name);
      f.elem_size = int64_t(start + sizeof(stored));
      throw fault_tag{};
    }
    s.addr = L.arena + start;
    s.generation = L.generation;
    s.reg = region{s.addr, 0, int64_t(sizeof(stored)), name, 0, {}};
    array_dims<T>::fill(s.reg, 0);
    std::memset(s.addr, 0xff, sizeof(stored));
    L.arena_used = start + sizeof(stored);
  }
  return *reinterpret_cast<stored*>(s.addr);
}

// ---------------------------------------------------------------- fibers

enum fiber_state : uint8_t { runnable, at_collective, at_barrier, finished };

struct fiber;
// Resolves one SIMD-group call for the lanes in `active` (bit i: lane i of
// the SIMD group starting at `lanes`); false after recording a fault.
typedef bool (*resolver)(fiber* lanes, uint32_t active, const char* name);

struct fiber {
#ifdef MSL_ASM_SWITCH
  void* sp;
#else
  ucontext_t context;
#endif
  thread_ids ids;
  fiber_state state;
  site where;          // of the barrier or SIMD-group call it waits at
  resolver resolve;    // of that call
  const char* name;    // of that call, for messages
  const void* in;      // its arguments and result
  const void* in2;
  void* out;
  uint32_t arg, arg2;
  work_state work;     // its account of work units (see below)
};

typedef void (*thread_body)(void* body, const thread_ids& ids);

struct scheduler {
  fiber* fibers;
  uint n;
  fiber* running;
  thread_body body;
  void* body_arg;
#ifdef MSL_ASM_SWITCH
  void* main_sp;
#else
  ucontext_t main_context;
#endif
};

#ifdef MSL_ASM_SWITCH
// switch_stack(save, load): push the callee-saved registers and the SSE/x87
// control words, store the stack pointer in *save, continue on stack `load`.
__attribute__((naked, noinline)) static void switch_stack(void** /*save*/, void* /*load*/) {
  asm volatile(
      "pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "subq $8, %rsp\n\t"
      "stmxcsr (%rsp)\n\t"
      "fnstcw 4(%rsp)\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsi, %rsp\n\t"
      "ldmxcsr (%rsp)\n\t"
      "fldcw 4(%rsp)\n\t"
      "addq $8, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}
// A new fiber's first return lands here, with its fiber in r12 and entry in r13.
__attribute__((naked, noinline)) static void fiber_start() {
  asm volatile(
      "movq %r12, %rdi\n\t"
      "callq *%r13\n\t"
      "ud2\n\t");
}
#endif

inline scheduler& sched() { return *current->sched; }

// Leave the running fiber for the scheduler.
inline void suspend(fiber* f) {
#ifdef MSL_ASM_SWITCH
  switch_stack(&f->sp, sched().main_sp);
#else
  swapcontext(&f->context, &sched().main_context);
#endif
}

// Run fiber f until it waits or returns.
inline void resume(scheduler& s, fiber* f) {
  s.running = f;
#ifdef MSL_ASM_SWITCH
  switch_stack(&s.main_sp, f->sp);
#else
  swapcontext(&s.main_context, &f->context);
#endif
}

inline void record_thread(fault_record& f, const thread_ids& t) { set_ids(f, t.pos, t.group, t.local); }

// Record the C++ exception escaping thread t (a fault_tag: its record is written).
inline void caught(const thread_ids& t) {
  try {
    throw;
  } catch (const fault_tag&) {
    record_thread(*current->fault, t);
  } catch (...) {
    record_thread(begin_fault(fault_other), t);
  }
}

// A fiber's whole life: the kernel for its thread; a fault stops it here.
inline void fiber_main(fiber* f) {
  scheduler& s = sched();
  try {
    s.body(s.body_arg, f->ids);
  } catch (...) {
    caught(f->ids);
  }
  f->state = finished;
  suspend(f);
  __builtin_unreachable();
}

#ifndef MSL_ASM_SWITCH
inline void fiber_main_ucontext() { fiber_main(sched().running); }
#endif

// ---------------------------------------------------------------- work budget, interrupts

// A thread may spend `budget` units of work (the launch's work_budget): one per
// loop iteration (msl_host appends MSL_LOOP_TICK or MSL_HELPER_TICK to every
// `for` and `while` condition: a unit each time it holds), and at each wait at a
// barrier or SIMD-group function as many as its threadgroup has threads (a round
// of waits costs every thread of the group a turn). The unit past its budget
// stops it. The loops of the kernel body count down the kernel function's own
// argument msl_work_ (a register): a grant of at most grant_units units taken
// from the thread's account (work_state), settled when it runs out. The other
// ticks and the waits charge the account itself, found through `current`. At
// every grant, every 65536 other units and every wait, a thread also looks
// whether SIGINT arrived.

// Set by the SIGINT handler of an interruptible launch of this library.
inline volatile sig_atomic_t interrupted = 0;

inline bool interrupt_pending() { return current->interruptible && interrupted; }

// Stop the thread: SIGINT arrived, or its budget is spent (at file:line).
[[noreturn, gnu::cold, gnu::noinline]] inline void stop_thread(const char* file, unsigned line) {
  if (interrupt_pending()) {
    begin_fault(fault_interrupted);
    throw fault_tag{};
  }
  fault_record& f = begin_fault(fault_budget);
  f.index = current->budget;
  f.line = int32_t(line);
  copy_text(f.file, sizeof f.file, file);
  throw fault_tag{};
}

// The running thread's account.
inline work_state& thread_work() {
  launch_ctx* L = current;
  return L->sched ? L->sched->running->work : L->work;
}

// The body's grant ran out at file:line: settle it and this unit; the next grant.
// (The account comes as an argument: a call here, to find it, would make the
// compiler keep the loop's values in memory.)
inline int64_t next_grant(work_state& w, const char* file, unsigned line) {
  w.left -= w.grant + 1;
  if (w.left < 0 || (interrupted && w.interruptible)) stop_thread(file, line);
  w.grant = std::min(grant_units, w.left);
  return w.grant;
}

inline bool helper_tick(const char* file, unsigned line) {
  work_state& w = thread_work();
  if (__builtin_expect(--w.left < 0 || (w.left & 0xffff) == 0, 0)) {
    if (w.left < 0 || (interrupted && w.interruptible)) stop_thread(file, line);
  }
  return true;
}

// A wait at a barrier or SIMD-group function at `where`.
inline void charge_wait(fiber* f, const site& where) {
  f->work.left -= int64_t(f->ids.count);
  if (f->work.left < 0 || (interrupted && f->work.interruptible)) stop_thread(where.file, where.line);
}

// While a launch that may be interrupted runs, SIGINT only sets `interrupted`
// (the threads stop at their next check; Python then raises the signal again
// for its own handler). Python calls sigint_begin before it runs the handlers of
// signals that came earlier and launches, and sigint_end after, so no SIGINT
// falls between its own last check and the launch. Left alone where SIGINT is
// ignored or kills the process.
inline struct sigaction sigint_saved;
inline bool sigint_installed = false;

inline void sigint_begin() {
  interrupted = 0;
  if (sigint_installed || sigaction(SIGINT, nullptr, &sigint_saved) != 0) return;
  const bool plain = !(sigint_saved.sa_flags & SA_SIGINFO);
  if (plain && (sigint_saved.sa_handler == SIG_DFL || sigint_saved.sa_handler == SIG_IGN)) return;
  struct sigaction ours = {};
  ours.sa_handler = [](int) { interrupted = 1; };
  sigemptyset(&ours.sa_mask);
  sigint_installed = sigaction(SIGINT, &ours, nullptr) == 0;
}

inline void sigint_end() {
  if (sigint_installed) sigaction(SIGINT, &sigint_saved, nullptr);
  sigint_installed = false;
}

constexpr size_t fiber_stack_bytes = size_t(256) << 10;
constexpr size_t page_bytes = 4096;

// Stacks for up to `n` fibers, each above a guard page; per OS thread, reused by the groups of one launch and
// released when it ends (run_grid): every kernel library has its own pool, and each guard page is a mapping of
// its own, so pools kept by hundreds of loaded kernels would use up the process's mappings (vm.max_map_count).
struct stack_pool {
  char* base = nullptr;
  size_t count = 0;
  char* get(size_t n) {
    if (n > count) {
      release();
      const size_t bytes = n * (fiber_stack_bytes + page_bytes);
      void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) return nullptr;
      base = static_cast<char*>(m);
      count = n;
      for (size_t i = 0; i < n; ++i) mprotect(base + i * (fiber_stack_bytes + page_bytes), page_bytes, PROT_NONE);
    }
    return base;
  }
  void release() {
    if (base) munmap(base, count * (fiber_stack_bytes + page_bytes));
    base = nullptr;
    count = 0;
  }
  ~stack_pool() { release(); }
};
inline thread_local stack_pool stacks;

inline void start_fiber(fiber* f, char* stack) {
  char* top = stack + page_bytes + fiber_stack_bytes;
#ifdef MSL_ASM_SWITCH
  void** sp = reinterpret_cast<void**>(top);
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  *--sp = reinterpret_cast<void*>(&fiber_start);  // return address of the first switch
  *--sp = nullptr;                                // rbp
  *--sp = nullptr;                                // rbx
  *--sp = f;                                      // r12
  *--sp = reinterpret_cast<void*>(&fiber_main);   // r13
  *--sp = nullptr;                                // r14
  *--sp = nullptr;                                // r15
  *--sp = reinterpret_cast<void*>(uintptr_t(mxcsr) | uintptr_t(fcw) << 32);
  f->sp = sp;
#else
  getcontext(&f->context);
  f->context.uc_stack.ss_sp = stack + page_bytes;
  f->context.uc_stack.ss_size = fiber_stack_bytes;
  f->context.uc_link = nullptr;
  makecontext(&f->context, fiber_main_ucontext, 0);
#endif
  f->state = runnable;
  f->work = fresh_work(current->budget, current->interruptible);
  f->ids.work = &f->work;
}

// The fiber now running (a SIMD-group function or barrier outside fiber mode
// means msl_host misjudged the kernel: say so rather than crash).
inline fiber* running_fiber(const char* what) {
  launch_ctx* L = current;
  if (L == nullptr || L->sched == nullptr) {
    set_detail(begin_fault(fault_other), "%s called in a kernel msl_host runs without fibers", what);
    throw fault_tag{};
  }
  return L->sched->running;
}

// Whether v, stepping by `step` from anywhere, leaves `v < bound` (`v <= bound`
// with `inclusive`; `v > bound`, `v >= bound` for a negative step) before it
// would overflow V: bound fits V, and its last value plus step still does.
template <class V>
constexpr bool counted_ends(__int128 bound, __int128 step, bool inclusive) {
  if constexpr (!std::is_integral<V>::value || std::is_same<V, bool>::value) {
    return false;
  } else {
    const __int128 lo = std::numeric_limits<V>::min(), hi = std::numeric_limits<V>::max();
    const __int128 last = step > 0 ? bound - !inclusive : bound + !inclusive;  // the last value inside
    return bound >= lo && bound <= hi && (step > 0 ? last + step <= hi : last + step >= lo);
  }
}

// ---------------------------------------------------------------- barriers

inline void wait_at_barrier(const site& where) {
  fiber* f = running_fiber("threadgroup_barrier");
  charge_wait(f, where);
  f->state = at_barrier;
  f->where = where;
  suspend(f);
}

inline const char* describe(const fiber& f, char* buf, size_t size) {
  if (f.state == finished) return "returned";
  std::snprintf(buf, size, "waits at %s at %s:%u", f.state == at_barrier ? "another threadgroup_barrier" : f.name,
                f.where.file, f.where.line);
  return buf;
}

// All threads wait at barriers: release them if they wait at the same one;
// else record the divergence.
inline bool release_barrier(fiber* fibers, uint n) {
  const fiber* at = nullptr;
  for (uint i = 0; i < n && !at; ++i) if (fibers[i].state == at_barrier) at = &fibers[i];
  uint there = 0;
  const fiber* odd = nullptr;
  for (uint i = 0; i < n; ++i) {
    if (fibers[i].state == at_barrier && same_site(fibers[i].where, at->where)) ++there;
    else if (!odd) odd = &fibers[i];
  }
  if (odd) {
    fault_record& f = begin_fault(fault_barrier);
    f.line = int32_t(at->where.line);
    copy_text(f.file, sizeof f.file, at->where.file);
    char buf[320];
    set_detail(f, "%u of %u threads wait at this threadgroup_barrier; thread (%u, %u, %u) in the threadgroup %s",
               there, n, odd->ids.local.x, odd->ids.local.y, odd->ids.local.z, describe(*odd, buf, sizeof buf));
    record_thread(f, odd->ids);
    return false;
  }
  for (uint i = 0; i < n; ++i) fibers[i].state = runnable;
  return true;
}

// ---------------------------------------------------------------- SIMD-group calls

// Resolve, in one SIMD group, the call that comes first in the source among
// those its lanes wait at. Returns 1 if resolved, 0 if none waits, -1 on fault.
inline int resolve_simd_group(fiber* lanes, uint count) {
  const fiber* first = nullptr;
  for (uint i = 0; i < count; ++i) {
    const fiber& f = lanes[i];
    if (f.state == at_collective && (!first || site_before(f.where, first->where))) first = &f;
  }
  if (!first) return 0;
  uint32_t active = 0;
  for (uint i = 0; i < count; ++i) {
    const fiber& f = lanes[i];
    if (f.state == at_collective && f.resolve == first->resolve && same_site(f.where, first->where)) active |= 1u << i;
  }
  if (!first->resolve(lanes, active, first->name)) return -1;
  for (uint i = 0; i < count; ++i) if (active >> i & 1) lanes[i].state = runnable;
  return 1;
}

// Run the threads of one threadgroup as fibers until all return; false on a fault.
inline bool run_fibers(scheduler& s) {
  const fault_record& fault = *current->fault;
  for (;;) {
    for (uint i = 0; i < s.n; ++i) {
      if (s.fibers[i].state == runnable) {
        resume(s, &s.fibers[i]);
        if (fault.kind != fault_none) return false;
      }
    }
    bool resolved = false;
    for (uint g = 0; g * simd_width < s.n; ++g) {
      const int r = resolve_simd_group(s.fibers + g * simd_width, metal::min(simd_width, s.n - g * simd_width));
      if (r < 0) return false;
      resolved |= r > 0;
    }
    if (resolved) continue;
    bool all_finished = true;
    for (uint i = 0; i < s.n; ++i) all_finished &= s.fibers[i].state == finished;
    if (all_finished) return true;
    if (!release_barrier(s.fibers, s.n)) return false;
  }
}

// Wait with the other lanes at a SIMD-group call; returns its result for this lane.
template <class R, class T>
inline R collective(resolver fn, const char* name, const site& where, const T& in, uint32_t arg = 0,
                    const void* in2 = nullptr, uint32_t arg2 = 0) {
  fiber* f = running_fiber(name);
  charge_wait(f, where);
  R out{};
  f->state = at_collective;
  f->where = where;
  f->resolve = fn;
  f->name = name;
  f->in = &in;
  f->in2 = in2;
  f->out = &out;
  f->arg = arg;
  f->arg2 = arg2;
  suspend(f);
  return out;
}

template <class T> inline const T& input(const fiber& f) { return *static_cast<const T*>(f.in); }
template <class T> inline T& output(const fiber& f) { return *static_cast<T*>(f.out); }

// A lane read by a SIMD-group call that does not take part in it.
inline bool inactive_lane(fiber* lanes, uint reader, uint lane, const char* name) {
  fault_record& f = begin_fault(fault_lane);
  f.line = int32_t(lanes[reader].where.line);
  copy_text(f.file, sizeof f.file, lanes[reader].where.file);
  set_detail(f, "%s reads lane %u, which is not an active lane of the group (it returned, waits elsewhere, "
             "or does not exist): the value is undefined in Metal", name, lane);
  record_thread(f, lanes[reader].ids);
  return false;
}

// The type reductions compute in: float for bfloat (as MLX's bf16_math.h does).
template <class T> struct acc_type { using type = T; };
template <> struct acc_type<metal::bfloat> { using type = float; };
template <int N> struct acc_type<metal::vec<metal::bfloat, N>> { using type = metal::vec<float, N>; };
template <class T> using acc_t = typename acc_type<T>::type;

struct op_sum { template <class A> A operator()(const A& a, const A& b) const { return a + b; } };
struct op_product { template <class A> A operator()(const A& a, const A& b) const { return a * b; } };
struct op_min { template <class A> A operator()(const A& a, const A& b) const { return metal::min(a, b); } };
struct op_max { template <class A> A operator()(const A& a, const A& b) const { return metal::max(a, b); } };
struct op_and { template <class A> A operator()(const A& a, const A& b) const { return a & b; } };
struct op_or { template <class A> A operator()(const A& a, const A& b) const { return a | b; } };
struct op_xor { template <class A> A operator()(const A& a, const A& b) const { return a ^ b; } };

// Reductions over the active lanes of each group of W lanes (32: the SIMD
// group; 4: each quad), in lane order.
template <uint W, class T, class Op>
bool resolve_reduce(fiber* lanes, uint32_t active, const char*) {
  for (uint base = 0; base < simd_width; base += W) {
    bool any = false;
    acc_t<T> acc{};
    for (uint i = base; i < base + W; ++i) {
      if (!(active >> i & 1)) continue;
      const acc_t<T> v = acc_t<T>(input<T>(lanes[i]));
      acc = any ? Op()(acc, v) : v;
      any = true;
    }
    for (uint i = base; i < base + W; ++i) if (active >> i & 1) output<T>(lanes[i]) = T(acc);
  }
  return true;
}

// Prefix sums and products over the active lanes, in lane order.
template <uint W, class T, class Op, bool Inclusive>
bool resolve_prefix(fiber* lanes, uint32_t active, const char*) {
  const acc_t<T> identity = acc_t<T>(std::is_same<Op, op_sum>::value ? 0 : 1);
  for (uint base = 0; base < simd_width; base += W) {
    acc_t<T> acc = identity;
    for (uint i = base; i < base + W; ++i) {
      if (!(active >> i & 1)) continue;
      const acc_t<T> next = Op()(acc, acc_t<T>(input<T>(lanes[i])));
      output<T>(lanes[i]) = T(Inclusive ? next : acc);
      acc = next;
    }
  }
  return true;
}

// Where each kind of shuffle reads, for lane j of a group of W lanes.
enum shuffle_kind { sh_lane, sh_down, sh_up, sh_xor, sh_rotate_down, sh_rotate_up, sh_fill_down, sh_fill_up, sh_first };

// Source of lane i (within [base, base + W)): a lane, or -1 for its own value;
// *from_fill says the value comes from the `filling` argument.
template <uint W>
inline int shuffle_source(shuffle_kind kind, uint i, uint base, uint32_t active, uint arg, uint arg2, bool* from_fill) {
  const uint j = i - base;
  *from_fill = false;
  switch (kind) {
    case sh_lane: return int(arg < W ? base + arg : simd_width + arg);
    case sh_down: return j + arg < W ? int(i + arg) : -1;
    case sh_up: return j >= arg ? int(i - arg) : -1;
    case sh_xor: return (j ^ arg) < W ? int(base + (j ^ arg)) : int(simd_width + (j ^ arg));
    case sh_rotate_down: return int(base + (j + arg) % W);
    case sh_rotate_up: return int(base + (j + W - arg % W) % W);
    case sh_fill_down:
    case sh_fill_up: {
      const uint m = arg2 ? arg2 : W, k = j % m, start = i - k;
      if (kind == sh_fill_down) {
        *from_fill = k + arg >= m;
        return int(*from_fill ? start + k + arg - m : start + k + arg);
      }
      *from_fill = k < arg;
      return int(*from_fill ? start + m - arg + k : start + k - arg);
    }
    case sh_first:
      for (uint l = base; l < base + W; ++l) if (active >> l & 1) return int(l);
  }
  return -1;
}

template <uint W, class T, shuffle_kind Kind>
bool resolve_shuffle(fiber* lanes, uint32_t active, const char* name) {
  for (uint i = 0; i < simd_width; ++i) {
    if (!(active >> i & 1)) continue;
    const fiber& f = lanes[i];
    bool from_fill;
    const int src = shuffle_source<W>(Kind, i, i / W * W, active, f.arg, f.arg2, &from_fill);
    if (src < 0) {
      output<T>(f) = input<T>(f);
    } else if (uint(src) >= simd_width || !(active >> src & 1)) {
      return inactive_lane(lanes, i, uint(src) >= simd_width ? uint(src) - simd_width : uint(src), name);
    } else {
      const fiber& s = lanes[src];
      output<T>(f) = from_fill ? *static_cast<const T*>(s.in2) : input<T>(s);
    }
  }
  return true;
}

// A vote: bit i for lane i; all()/any() look at the active lanes only.
template <uint W>
struct group_vote {
  typedef ulong vote_t;
  vote_t bits;
  vote_t active;
  explicit constexpr group_vote(vote_t b = 0, vote_t a = 0) : bits(b), active(a) {}
  explicit constexpr operator vote_t() const { return bits; }
  constexpr bool all() const { return (bits & active) == active; }
  constexpr bool any() const { return bits != 0; }
};

// Ballot-like calls: R is bool (all, any, is_first) or a vote.
enum vote_kind { vote_all, vote_any, vote_ballot, vote_first, vote_mask };

template <uint W, vote_kind Kind>
bool resolve_vote(fiber* lanes, uint32_t active, const char*) {
  for (uint base = 0; base < simd_width; base += W) {
    const uint32_t group = uint32_t((uint64_t(1) << W) - 1) << base;
    const uint32_t in_group = active & group;
    uint32_t yes = 0;
    for (uint i = base; i < base + W; ++i) if ((in_group >> i & 1) && input<bool>(lanes[i])) yes |= 1u << i;
    for (uint i = base; i < base + W; ++i) {
      if (!(in_group >> i & 1)) continue;
      switch (Kind) {
        case vote_all: output<bool>(lanes[i]) = yes == in_group; break;
        case vote_any: output<bool>(lanes[i]) = yes != 0; break;
        case vote_first: output<bool>(lanes[i]) = i == uint(__builtin_ctz(in_group)); break;
        case vote_ballot:
        case vote_mask: {
          const uint32_t bits = Kind == vote_mask ? in_group : yes;
          output<group_vote<W>>(lanes[i]) = group_vote<W>(bits >> base, in_group >> base);
          break;
        }
      }
    }
  }
  return true;
}

inline bool resolve_nothing(fiber*, uint32_t, const char*) { return true; }

}  // namespace msl

namespace metal {

typedef msl::group_vote<32> simd_vote;
typedef msl::group_vote<4> quad_vote;

inline void threadgroup_barrier(mem_flags, msl::site where = msl::site()) { msl::wait_at_barrier(where); }
inline void simdgroup_barrier(mem_flags, msl::site where = msl::site()) {
  msl::collective<char>(&msl::resolve_nothing, "simdgroup_barrier", where, 0);
}
inline void atomic_thread_fence(mem_flags, memory_order, thread_scope = thread_scope_device) {}

// The SIMD-group (prefix simd_, W = 32) and quad-group (quad_, W = 4) functions.
#define MSL_GROUP_REDUCE(P, W, name, Op)                                                   \
  template <class T>                                                                       \
  inline T P##_##name(T data, msl::site where = msl::site()) {                             \
    return msl::collective<T>(&msl::resolve_reduce<W, T, msl::Op>, #P "_" #name, where, data); \
  }
#define MSL_GROUP_PREFIX(P, W, name, Op, Inclusive)                                              \
  template <class T>                                                                             \
  inline T P##_prefix_##name(T data, msl::site where = msl::site()) {                            \
    return msl::collective<T>(&msl::resolve_prefix<W, T, msl::Op, Inclusive>, #P "_prefix_" #name, \
                              where, data);                                                      \
  }
#define MSL_GROUP_SHUFFLE(P, W, name, Kind)                                                     \
  template <class T>                                                                            \
  inline T P##_##name(T data, ushort arg, msl::site where = msl::site()) {                      \
    return msl::collective<T>(&msl::resolve_shuffle<W, T, msl::Kind>, #P "_" #name, where, data, arg); \
  }
#define MSL_GROUP_FILL(P, W, name, Kind)                                                       \
  template <class T>                                                                           \
  inline T P##_##name(T data, T filling, ushort delta, ushort modulo = W,                      \
                      msl::site where = msl::site()) {                                         \
    return msl::collective<T>(&msl::resolve_shuffle<W, T, msl::Kind>, #P "_" #name, where, data, \
                              delta, &filling, modulo);                                        \
  }
#define MSL_GROUP_VOTE(P, W, name, R, Kind, ...)                                               \
  inline R P##_##name(__VA_ARGS__ msl::site where = msl::site()) {                             \
    return msl::collective<R>(&msl::resolve_vote<W, msl::Kind>, #P "_" #name, where, value);   \
  }
#define MSL_GROUP_FUNCTIONS(P, W, Vote)                                                        \
  MSL_GROUP_REDUCE(P, W, sum, op_sum)                                                          \
  MSL_GROUP_REDUCE(P, W, product, op_product)                                                  \
  MSL_GROUP_REDUCE(P, W, min, op_min)                                                          \
  MSL_GROUP_REDUCE(P, W, max, op_max)                                                          \
  MSL_GROUP_REDUCE(P, W, and, op_and)                                                          \
  MSL_GROUP_REDUCE(P, W, or, op_or)                                                            \
  MSL_GROUP_REDUCE(P, W, xor, op_xor)                                                          \
  MSL_GROUP_PREFIX(P, W, inclusive_sum, op_sum, true)                                          \
  MSL_GROUP_PREFIX(P, W, exclusive_sum, op_sum, false)                                         \
  MSL_GROUP_PREFIX(P, W, inclusive_product, op_product, true)                                  \
  MSL_GROUP_PREFIX(P, W, exclusive_product, op_product, false)                                 \
  MSL_GROUP_SHUFFLE(P, W, shuffle, sh_lane)                                                    \
  MSL_GROUP_SHUFFLE(P, W, broadcast, sh_lane)                                                  \
  MSL_GROUP_SHUFFLE(P, W, shuffle_down, sh_down)                                               \
  MSL_GROUP_SHUFFLE(P, W, shuffle_up, sh_up)                                                   \
  MSL_GROUP_SHUFFLE(P, W, shuffle_xor, sh_xor)                                                 \
  MSL_GROUP_SHUFFLE(P, W, shuffle_rotate_down, sh_rotate_down)                                 \
  MSL_GROUP_SHUFFLE(P, W, shuffle_rotate_up, sh_rotate_up)                                     \
  MSL_GROUP_FILL(P, W, shuffle_and_fill_down, sh_fill_down)                                    \
  MSL_GROUP_FILL(P, W, shuffle_and_fill_up, sh_fill_up)                                        \
  template <class T>                                                                           \
  inline T P##_broadcast_first(T data, msl::site where = msl::site()) {                        \
    return msl::collective<T>(&msl::resolve_shuffle<W, T, msl::sh_first>, #P "_broadcast_first", \
                              where, data);                                                    \
  }                                                                                            \
  MSL_GROUP_VOTE(P, W, all, bool, vote_all, bool value, )                                      \
  MSL_GROUP_VOTE(P, W, any, bool, vote_any, bool value, )                                      \
  MSL_GROUP_VOTE(P, W, ballot, Vote, vote_ballot, bool value, )                                \
  inline bool P##_is_first(msl::site where = msl::site()) {                                    \
    return msl::collective<bool>(&msl::resolve_vote<W, msl::vote_first>, #P "_is_first", where, true); \
  }                                                                                            \
  inline Vote P##_active_threads_mask(msl::site where = msl::site()) {                         \
    return msl::collective<Vote>(&msl::resolve_vote<W, msl::vote_mask>, #P "_active_threads_mask", \
                                 where, true);                                                 \
  }

MSL_GROUP_FUNCTIONS(simd, 32, simd_vote)
MSL_GROUP_FUNCTIONS(quad, 4, quad_vote)

#undef MSL_GROUP_REDUCE
#undef MSL_GROUP_PREFIX
#undef MSL_GROUP_SHUFFLE
#undef MSL_GROUP_FILL
#undef MSL_GROUP_VOTE
#undef MSL_GROUP_FUNCTIONS

// ---------------------------------------------------------------- atomics

// Metal's atomic types: int, uint, bool, float and (for min/max) ulong. Threads
// run one at a time here, so plain loads and stores are atomic.
template <class T>
struct atomic {
  static_assert(std::is_same<T, int>::value || std::is_same<T, uint>::value || std::is_same<T, bool>::value ||
                    std::is_same<T, float>::value || std::is_same<T, ulong>::value,
                "Metal has atomic<int>, atomic<uint>, atomic<bool>, atomic<float> and atomic<ulong> only");
  typedef T value_type;
  T value;
};
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<bool> atomic_bool;
typedef atomic<float> atomic_float;

// The atomic object a pointer (plain or checked) points to.
template <class P>
inline auto& atomic_object(P object) {
  return *object;
}
template <class P>
using atomic_value_t = typename std::remove_reference_t<decltype(*std::declval<P>())>::value_type;

// Integer addition and subtraction wrap around, as on the GPU.
template <class T>
inline T wrapping(T a, T b, bool subtract) {
  if constexpr (std::is_integral<T>::value && !std::is_same<T, bool>::value) {
    typedef std::make_unsigned_t<T> U;
    return T(subtract ? U(U(a) - U(b)) : U(U(a) + U(b)));
  } else {
    return T(subtract ? a - b : a + b);
  }
}

#define MSL_ATOMIC_FETCH(name, expr)                                                            \
  template <class P, class U>                                                                   \
  inline atomic_value_t<P> atomic_fetch_##name##_explicit(P object, U operand, memory_order) {  \
    typedef atomic_value_t<P> T;                                                                \
    auto& a = atomic_object(object);                                                            \
    const T x = a.value, y = T(operand);                                                        \
    a.value = T(expr);                                                                          \
    return x;                                                                                   \
  }
MSL_ATOMIC_FETCH(add, wrapping(x, y, false))
MSL_ATOMIC_FETCH(sub, wrapping(x, y, true))
MSL_ATOMIC_FETCH(and, x & y)
MSL_ATOMIC_FETCH(or, x | y)
MSL_ATOMIC_FETCH(xor, x ^ y)
MSL_ATOMIC_FETCH(min, y < x ? y : x)
MSL_ATOMIC_FETCH(max, x < y ? y : x)
#undef MSL_ATOMIC_FETCH

template <class P, class U>
inline void atomic_store_explicit(P object, U desired, memory_order) {
  atomic_object(object).value = atomic_value_t<P>(desired);
}
template <class P>
inline atomic_value_t<P> atomic_load_explicit(P object, memory_order) {
  return atomic_object(object).value;
}
template <class P, class U>
inline atomic_value_t<P> atomic_exchange_explicit(P object, U desired, memory_order) {
  auto& a = atomic_object(object);
  const atomic_value_t<P> old = a.value;
  a.value = atomic_value_t<P>(desired);
  return old;
}
// Never fails spuriously here.
template <class P, class E, class U>
inline bool atomic_compare_exchange_weak_explicit(P object, E* expected, U desired, memory_order, memory_order) {
  auto& a = atomic_object(object);
  if (a.value == *expected) {
    a.value = atomic_value_t<P>(desired);
    return true;
  }
  *expected = a.value;
  return false;
}

}  // namespace metal

namespace msl {

// ---------------------------------------------------------------- the grid

// Run the threads of one group as fibers.
inline bool run_group_fibers(launch_ctx& L, const thread_ids& first, thread_body body, void* body_arg) {
  const uint n = first.count;
  char* stack = stacks.get(n);
  fiber* fibers = static_cast<fiber*>(std::calloc(n, sizeof(fiber)));
  if (stack == nullptr || fibers == nullptr) {
    std::free(fibers);
    set_detail(begin_fault(fault_other), "no memory for %u fiber stacks", n);
    return false;
  }
  scheduler s{fibers, n, nullptr, body, body_arg};
  L.sched = &s;
  for (uint i = 0; i < n; ++i) {
    thread_ids& t = fibers[i].ids;
    t = first;
    t.local = uint3(i % t.size.x, i / t.size.x % t.size.y, i / (t.size.x * t.size.y));
    t.pos = first.pos + t.local;
    t.index = i;
    start_fiber(&fibers[i], stack + i * (fiber_stack_bytes + page_bytes));
  }
  const bool ok = run_fibers(s);
  L.sched = nullptr;
  std::free(fibers);
  return ok;
}

// Sets `current` for the launch and clears it after.
struct launch_scope {
  launch_ctx* saved;
  explicit launch_scope(launch_ctx* L) : saved(current) { current = L; }
  ~launch_scope() { current = saved; }
};

// Run `body` for every thread of the grid `G` (the launcher's, which the
// kernel's attributes read too), each thread with `budget` units of work;
// returns 0, or 1 after a fault (or an interrupt, checked between groups and
// in the threads; `interruptible`: SIGINT stops the launch). Fibers: the
// kernel has barriers or SIMD-group functions. TgSlots: its number of
// threadgroup declarations. Without fibers, the threads run one
// after the other in the loop below. run_grid is inlined into the launcher
// and `body` (the kernel call, its arguments captured by value) is taken by
// value: the compiler then sees that no call inside the kernel can change
// them, and optimises the loop like a hand-written one.
template <bool Fibers, int TgSlots, class Body>
__attribute__((always_inline)) inline int run_grid(const grid_info G, const region* regions, int nregions,
             fault_record* fault, int64_t budget, bool interruptible, Body body) {
  if (G.dispatch_count == 0) return 0;
  tg_slot slots[TgSlots > 0 ? TgSlots : 1] = {};
  char* arena = TgSlots > 0 ? static_cast<char*>(std::aligned_alloc(64, tg_memory_limit)) : nullptr;
  launch_ctx L{fault, regions, nregions, slots, TgSlots, arena, 0, 0, nullptr, budget, fresh_work(budget, interruptible), interruptible};
  launch_scope scope(&L);
  int status = 0;
  for (uint gz = 0; gz < G.groups.z; ++gz)
  for (uint gy = 0; gy < G.groups.y; ++gy)
  for (uint gx = 0; gx < G.groups.x; ++gx) {
    if (interruptible && interrupted) {
      begin_fault(fault_interrupted);
      status = 1;
      goto done;
    }
    const uint3 group(gx, gy, gz);
    const uint3 first = group * G.dispatch;
    const uint3 size(metal::min(G.dispatch.x, G.grid.x - first.x), metal::min(G.dispatch.y, G.grid.y - first.y),
                     metal::min(G.dispatch.z, G.grid.z - first.z));
    const uint count = size.x * size.y * size.z;
    if (TgSlots > 0) new_group(L);
    if constexpr (Fibers) {
      const thread_ids ids{first, uint3(0u), group, size, 0u, count};
      if (!run_group_fibers(L, ids, [](void* b, const thread_ids& t) { (*static_cast<Body*>(b))(t); }, &body)) {
        status = 1;
        goto done;
      }
    } else {
      for (uint lz = 0; lz < size.z; ++lz)
      for (uint ly = 0; ly < size.y; ++ly)
      for (uint lx = 0; lx < size.x; ++lx) {
        try {
          const uint3 local(lx, ly, lz);
          L.work = fresh_work(budget, interruptible);
          body(thread_ids{first + local, local, group, size, (lz * size.y + ly) * size.x + lx, count, &L.work});
        } catch (...) {  // (the handler rebuilds the ids: keeping them for it would cost every thread)
          const uint3 local(lx, ly, lz);
          caught(thread_ids{first + local, local, group, size, (lz * size.y + ly) * size.x + lx, count});
          status = 1;
          goto done;
        }
      }
    }
  }
done:
  std::free(arena);
  if constexpr (Fibers) stacks.release();
  return status;
}

}  // namespace msl

// What msl_host appends to a loop condition: in the kernel body (whose function
// gets its first grant and its account as the arguments msl_work_ and
// msl_account_), and elsewhere (a constant
// expression, such as a constexpr helper's loop at compile time, counts nothing).
#define MSL_LOOP_TICK \
  (__builtin_expect(--msl_work_ >= 0, 1) ||                                \
   ((msl_work_ = ::msl::next_grant(*msl_account_, __FILE__, __LINE__)), true))
#define MSL_HELPER_TICK (__builtin_is_constant_evaluated() || ::msl::helper_tick(__FILE__, __LINE__))
// True (the loop ends by itself: no tick) for `for (V v = ...; v < bound; v += step)` (or <=, or counting
// down) where the compiler knows bound, which v reaches without overflowing V (msl_host checked that the
// body does not change v). __builtin_constant_p does not evaluate its argument.
#define MSL_COUNTED(v, bound, step, inclusive) \
  (__builtin_constant_p(bound) && ::msl::counted_ends<decltype(v)>((bound), (step), (inclusive)))
