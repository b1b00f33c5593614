// moe_combine_rmsnorm: the combine and the RMSNorm that follows it, in one kernel.
//   hidden[t,:] = sum_k expert_w[t,k] * y_expert[t*K + k, :]
//               + sigmoid(sh_logit[t]) * y_shared[t,:]      (when HAS_SHARED)
//               + residual[t,:]
//   normed[t,:] = hidden[t,:] / sqrt(mean(hidden[t,:]^2) + eps) * weight[:]
// Both are outputs in the activation dtype T. Sums are float32; the norm is taken of
// hidden as stored (rounded to T), as a separate RMSNorm kernel reading it back sees it.
// One threadgroup per token: a row reduction needs every thread of its row to meet.
// Template: T; W = elements per access (16 bytes of T when h is a multiple of that,
// else 1); TOP_K = 0: top_k read at run time, > 0: fixed when compiled; HAS_SHARED;
// ITERS = accesses per thread along the row, ceil(h / (W * threads));
// EPS_BITS = the bits of eps as a float32 (template arguments are integers); ROUND_BEFORE_WEIGHT;
// ROUNDING = where the combine's sums meet T, as in moe_weighted_reduce_row.metal (0: once, at the store);
// MLX_CUDA_SUM: the SIMD groups' sums added as MLX's CUDA RMSNorm adds them (step 2), else in order.
// Grid, counted in threads: n_tokens * threads, in threadgroups of `threads` (a multiple
// of 32, at most 1024).
const uint H = y_expert_shape[1];
const uint K = TOP_K > 0 ? uint(TOP_K) : uint(expert_w_shape[1]);
const uint t = threadgroup_position_in_grid.x;
const uint tid = thread_position_in_threadgroup.x;
const uint n_threads = threads_per_threadgroup.x;
const int64_t row = int64_t(t) * H;
const int64_t y_row = int64_t(t) * K * H;
struct alignas(sizeof(T) * W) Row {
    T v[W];
};

// 1. The combine, W outputs per access, each thread striding along the row. The values
// stay in registers for step 3, and each thread adds up the squares of its own.
const float logit = HAS_SHARED ? float(sh_logit[t]) : 0.0f;
// ROUNDED(x, level) is x rounded to T when ROUNDING >= level, else x. Rounding per op, the gate is computed as
// MLX's sigmoid computes it: e = exp(|x|) rounded to T, y = 1 / (1 + e), and 1 - y for x > 0; MLX's CPU leaves
// 1 + e and y unrounded (measured), its CUDA and Metal half types round them to T (level 2, read from MLX's source).
#define ROUNDED(x, level) (ROUNDING >= (level) ? float(static_cast<T>(x)) : (x))
float kept[ITERS][W];
float sumsq = 0.0f;
for (int it = 0; it < ITERS; ++it) {
    const uint h0 = (uint(it) * n_threads + tid) * W;
    if (h0 < H) {
        const Row res = *(const device Row*)(residual + row + h0);
        const Row ys = HAS_SHARED ? *(const device Row*)(y_shared + row + h0) : Row();
        float acc[W];
        for (int i = 0; i < W; ++i) {
            acc[i] = 0.0f;
        }
        for (uint k = 0; k < K; ++k) {
            const float w = float(expert_w[t * K + k]);
            const Row y = *(const device Row*)(y_expert + y_row + int64_t(k) * H + h0);
            for (int i = 0; i < W; ++i) {
                acc[i] = ROUNDED(acc[i] + ROUNDED(w * float(y.v[i]), 1), 2);
            }
        }
        const float below = ROUNDED(1.0f / ROUNDED(1.0f + ROUNDED(metal::exp(metal::abs(logit)), 1), 2), 2);
        const float gate = !HAS_SHARED ? 0.0f
                         : ROUNDING == 0 ? 1.0f / (1.0f + metal::exp(-logit))
                         : ROUNDED(logit < 0.0f ? below : 1.0f - below, 1);
        Row o;
        for (int i = 0; i < W; ++i) {
            const float combined = ROUNDING == 0 ? acc[i] + gate * float(ys.v[i])
                                 : HAS_SHARED ? ROUNDED(acc[i], 1) + ROUNDED(gate * float(ys.v[i]), 1) : acc[i];
            o.v[i] = static_cast<T>(ROUNDED(combined, 1) + float(res.v[i]));
            kept[it][i] = float(o.v[i]);
            sumsq += kept[it][i] * kept[it][i];
        }
        *(device Row*)(hidden + row + h0) = o;
    }
}

// 2. The row's sum of squares. Each SIMD group of 32 threads adds its lanes (simd_sum);
// lane 0 of each puts that partial sum in threadgroup memory; after the barrier, when every
// partial is there, each thread adds them up itself: in order, or (MLX_CUDA_SUM) as MLX's CUDA
// block reduce does, a second simd_sum over the partials on the first lanes and zeros on the rest.
threadgroup float partial[32];
const float group_sum = simd_sum(sumsq);
if (thread_index_in_simdgroup == 0) {
    partial[simdgroup_index_in_threadgroup] = group_sum;
}
threadgroup_barrier(mem_flags::mem_threadgroup);
float total = 0.0f;
if (MLX_CUDA_SUM) {
    const uint lane = thread_index_in_simdgroup;
    total = simd_sum(lane < simdgroups_per_threadgroup ? partial[lane] : 0.0f);
} else {
    for (uint g = 0; g < simdgroups_per_threadgroup; ++g) {
        total += partial[g];
    }
}
const float scale = metal::rsqrt(total / float(H) + as_type<float>(EPS_BITS));

// 3. normed = hidden * scale * weight, from the values kept in step 1, rounded to T once
// (ROUND_BEFORE_WEIGHT false), or as mx.fast.rms_norm rounds it (true): hidden * scale
// rounded to T, then times the weight, rounded again (the product of two half or bfloat
// values is exact in float32, so rounding it once gives what T * T gives).
for (int it = 0; it < ITERS; ++it) {
    const uint h0 = (uint(it) * n_threads + tid) * W;
    if (h0 < H) {
        const Row wt = *(const device Row*)(weight + h0);
        Row o;
        for (int i = 0; i < W; ++i) {
            const float x = kept[it][i] * scale;
            o.v[i] = static_cast<T>((ROUND_BEFORE_WEIGHT ? float(static_cast<T>(x)) : x) * float(wt.v[i]));
        }
        *(device Row*)(normed + row + h0) = o;
    }
}
