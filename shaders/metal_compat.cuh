// Lets a Metal kernel body written for mx.fast.metal_kernel compile unchanged as
// the body of mx.fast.cuda_kernel: the Metal names it uses, mapped onto CUDA.
// Covers what the bodies in this folder use: thread positions, 16-byte vectors, a few
// math functions, threadgroup memory and barriers, and SIMD-group sums (1-D threadgroups).
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef unsigned int uint;

// Thread position in the grid, counted in threads as Metal's dispatchThreads does.
__device__ inline uint3 metal_compat_thread_position_in_grid() {
  return make_uint3(blockIdx.x * blockDim.x + threadIdx.x,
                    blockIdx.y * blockDim.y + threadIdx.y,
                    blockIdx.z * blockDim.z + threadIdx.z);
}
#define thread_position_in_grid (metal_compat_thread_position_in_grid())
#define threadgroup_position_in_grid (blockIdx)
#define thread_position_in_threadgroup (threadIdx)
#define threads_per_threadgroup (blockDim)

// SIMD groups are CUDA warps of 32 threads; these names assume a 1-D threadgroup.
#define thread_index_in_simdgroup (threadIdx.x % 32u)
#define simdgroup_index_in_threadgroup (threadIdx.x / 32u)
#define simdgroups_per_threadgroup ((blockDim.x + 31u) / 32u)

namespace metal {
__device__ inline float exp(float x) { return ::expf(x); }
__device__ inline float abs(float x) { return ::fabsf(x); }
__device__ inline float max(float a, float b) { return ::fmaxf(a, b); }
__device__ inline float min(float a, float b) { return ::fminf(a, b); }
__device__ inline float fma(float a, float b, float c) { return ::fmaf(a, b, c); }
__device__ inline float rsqrt(float x) { return ::rsqrtf(x); }
__device__ inline bool isnan(float x) { return ::isnan(x); }

// metal::fast::: the GPU's approximate exp and division (a few ulp; CUDA's __expf and __fdividef), as Metal's
// fast:: functions are. __fdividef(x, y) is x * (1/y): no branch to a slow path, and 0 for an infinite y.
namespace fast {
__device__ inline float exp(float x) { return ::__expf(x); }
__device__ inline float divide(float x, float y) { return ::__fdividef(x, y); }
}  // namespace fast

// metal::vec<T, N>: N elements of T loaded and stored as one aligned access.
template <typename T, int N>
struct alignas(sizeof(T) * N) vec {
  T v[N];
  __device__ T& operator[](int i) { return v[i]; }
  __device__ const T& operator[](int i) const { return v[i]; }
};

}  // namespace metal

// Called without metal:: in Metal code (as metal_stdlib allows); metal::simd_sum works too.
// Threadgroup barriers: every thread of the block waits; the flags are Metal's names.
enum class mem_flags { mem_none, mem_device, mem_threadgroup };
__device__ inline void threadgroup_barrier(mem_flags) { __syncthreads(); }

// simd_sum: the sum over the 32 lanes of a warp, every lane active, returned to all of them.
__device__ inline float simd_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// as_type<To>(from): the same bits seen as another type of the same size.
template <typename To, typename From>
__device__ inline To as_type(From v) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs equal sizes");
  To r;
  memcpy(&r, &v, sizeof(To));
  return r;
}

namespace metal {
using ::as_type;
using ::mem_flags;
using ::simd_sum;
using ::threadgroup_barrier;
}  // namespace metal

typedef __half half;
typedef __half float16_t;
typedef __nv_bfloat16 bfloat16_t;

// Address-space qualifiers, defined last so the __device__ functions above keep theirs:
// CUDA pointers into global memory need none, and threadgroup memory is __shared__
// (declare threadgroup arrays only; a threadgroup pointer type has no CUDA spelling here).
#define device
#define constant
#define thread
#define threadgroup __shared__
