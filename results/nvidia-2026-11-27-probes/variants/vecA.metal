// moe_weighted_reduce, vectorised: each thread makes W = 4*NV consecutive outputs
// of one token, 16 bytes per row (NV = 1 for float: a float4; NV = 2 for
// half/bfloat: two 4-wide vectors), loaded and stored as one 16-byte Row.
//   out[t,h] = sum_k expert_w[t,k] * y_expert[t*K + k, h]
//            + sigmoid(sh_logit[t]) * y_shared[t,h]   (when HAS_SHARED)
//            + residual[t,h]                          (when HAS_RESIDUAL)
// Template: T = activation dtype; NV = vectors per thread;
// TOP_K = 0: top_k read from expert_w's shape at run time; > 0: top_k fixed when the
//   kernel is compiled, so the k loop unrolls and all its loads can be in flight at once;
// HAS_SHARED, HAS_RESIDUAL = which terms exist;
// ALIGNED = H is a multiple of W, so every row starts on a vector boundary.
// The host runs the scalar kernel instead when n_tokens*h < 8: MLX then passes small
// inputs in Metal's constant address space, where these device-pointer casts fail.
// Grid, counted in threads: n_tokens * G threads, G = ceil(H / W) per token row.
constexpr int W = 4 * NV;
typedef metal::vec<T, 4> V;
const uint H = y_expert_shape[1];
const uint K = TOP_K > 0 ? uint(TOP_K) : uint(expert_w_shape[1]);
const uint G = (H + W - 1) / W;
const uint t = thread_position_in_grid.x / G;
const uint h0 = (thread_position_in_grid.x - t * G) * W;
if (t >= uint(expert_w_shape[0])) {
    return;
}
const int64_t out_idx = int64_t(t) * H + h0;
const int64_t y_idx = int64_t(t) * K * H + h0;
const float gate = HAS_SHARED ? 1.0f / (1.0f + metal::exp(-float(sh_logit[t]))) : 0.0f;

// Row: the W outputs of one thread, aligned to its size (16 bytes), so each row of
// y_expert, y_shared, residual and out is one 16-byte access. With only the vector's
// own alignment (8 bytes for 4 halves) a half/bfloat row may become two 8-byte loads.
struct alignas(sizeof(T) * W) Row {
    V v[NV];
};
if (ALIGNED) {
    float acc[W];
    for (int i = 0; i < W; ++i) {
        acc[i] = 0.0f;
    }
    for (uint k = 0; k < K; ++k) {
        const float w = float(expert_w[t * K + k]);
        const Row y = *(const device Row*)(y_expert + y_idx + int64_t(k) * H);
        for (int v = 0; v < NV; ++v) {
            for (int i = 0; i < 4; ++i) {
                acc[4 * v + i] += w * float(y.v[v][i]);
            }
        }
    }
    const Row ys = HAS_SHARED ? *(const device Row*)(y_shared + out_idx) : Row();
    const Row res = HAS_RESIDUAL ? *(const device Row*)(residual + out_idx) : Row();
    Row o;
    for (int v = 0; v < NV; ++v) {
        for (int i = 0; i < 4; ++i) {
            float a = acc[4 * v + i];
            if (HAS_SHARED) {
                a += gate * float(ys.v[v][i]);
            }
            if (HAS_RESIDUAL) {
                a += float(res.v[v][i]);
            }
            o.v[v][i] = static_cast<T>(a);
        }
    }
    *(device Row*)(out + out_idx) = o;
} else {  // rows not vector-aligned (H not a multiple of W): one element at a time
    const uint n = (H - h0 < uint(W)) ? H - h0 : uint(W);
    for (uint i = 0; i < n; ++i) {
        float a = 0.0f;
        for (uint k = 0; k < K; ++k) {
            a += float(expert_w[t * K + k]) * float(y_expert[y_idx + int64_t(k) * H + i]);
        }
        if (HAS_SHARED) {
            a += gate * float(y_shared[out_idx + i]);
        }
        if (HAS_RESIDUAL) {
            a += float(residual[out_idx + i]);
        }
        out[out_idx + i] = static_cast<T>(a);
    }
}
