// msl_prelude.h: everything a kernel's translation unit starts with (and the
// precompiled header msl_host builds from it).
#pragma once

#if defined(__APPLE__) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700  // macOS declares ucontext (the fibers) only with this...
#define _DARWIN_C_SOURCE   // ... and hides MAP_ANONYMOUS without this
#endif

#include "mlx_utils.h"
#include "msl_matrix.h"

// Address spaces mean nothing on a CPU: after msl_host's source rewrite
// (threadgroup declarations become shared storage; in checked mode device,
// constant and threadgroup pointers become msl::checked<T>), what is left of
// them is dropped.
#define device
#define constant
#define thread
#define threadgroup
