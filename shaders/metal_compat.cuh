// Lets a Metal kernel body written for mx.fast.metal_kernel compile unchanged as
// the body of mx.fast.cuda_kernel: the Metal names it uses, mapped onto CUDA.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef unsigned int uint;

// Address-space qualifiers: CUDA pointers into global memory need none.
#define device
#define constant
#define thread

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

namespace metal {
__device__ inline float exp(float x) { return ::expf(x); }
__device__ inline float abs(float x) { return ::fabsf(x); }
__device__ inline float max(float a, float b) { return ::fmaxf(a, b); }
__device__ inline float min(float a, float b) { return ::fminf(a, b); }
__device__ inline float fma(float a, float b, float c) { return ::fmaf(a, b, c); }
__device__ inline bool isnan(float x) { return ::isnan(x); }

// metal::vec<T, N>: N elements of T loaded and stored as one aligned access.
template <typename T, int N>
struct alignas(sizeof(T) * N) vec {
  T v[N];
  __device__ T& operator[](int i) { return v[i]; }
  __device__ const T& operator[](int i) const { return v[i]; }
};
}  // namespace metal

typedef __half half;
typedef __half float16_t;
typedef __nv_bfloat16 bfloat16_t;
