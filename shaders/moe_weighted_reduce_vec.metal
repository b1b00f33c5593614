// moe_weighted_reduce, vectorised: each thread makes W = 4*NV consecutive outputs
// of one token and moves 16 bytes per row with NV 4-wide vector loads and stores
// (float: NV = 1, one float4; half/bfloat: NV = 2, two 8-byte vectors).
//   out[t,h] = sum_k expert_w[t,k] * y_expert[t*K + k, h]
//            + sigmoid(sh_logit[t]) * y_shared[t,h]   (+ residual[t,h] when HAS_RESIDUAL)
// Template: T = activation dtype; NV = vectors per thread; HAS_RESIDUAL;
// ALIGNED = H is a multiple of W, so every row starts on a vector boundary.
// The host runs the scalar kernel instead when n_tokens*h < 8: MLX then passes
// y_shared in Metal's constant address space, and these casts to device pointers
// would not compile.
// Grid, counted in threads: n_tokens * G threads, G = ceil(H / W) per token row.
constexpr int W = 4 * NV;
typedef metal::vec<T, 4> V;
const uint H = y_shared_shape[1];
const uint K = expert_w_shape[1];
const uint G = (H + W - 1) / W;
const uint t = thread_position_in_grid.x / G;
const uint h0 = (thread_position_in_grid.x - t * G) * W;
if (t >= uint(expert_w_shape[0])) {
    return;
}
const int64_t out_idx = int64_t(t) * H + h0;
const int64_t y_idx = int64_t(t) * K * H + h0;
const float gate = 1.0f / (1.0f + metal::exp(-float(sh_logit[t])));
float acc[W];

if (ALIGNED) {  // whole vectors: 16-byte loads and stores
    for (int i = 0; i < W; ++i) {
        acc[i] = 0.0f;
    }
    for (uint k = 0; k < K; ++k) {
        const float w = float(expert_w[t * K + k]);
        const device V* y = (const device V*)(y_expert + y_idx + int64_t(k) * H);
        for (int v = 0; v < NV; ++v) {
            const V yv = y[v];
            for (int i = 0; i < 4; ++i) {
                acc[4 * v + i] += w * float(yv[i]);
            }
        }
    }
    const device V* ys = (const device V*)(y_shared + out_idx);
    const device V* res = (const device V*)(residual + (HAS_RESIDUAL ? out_idx : 0));
    device V* o = (device V*)(out + out_idx);
    for (int v = 0; v < NV; ++v) {
        const V sv = ys[v];
        V ov;
        for (int i = 0; i < 4; ++i) {
            float a = acc[4 * v + i] + gate * float(sv[i]);
            if (HAS_RESIDUAL) {
                a += float(res[v][i]);
            }
            ov[i] = static_cast<T>(a);
        }
        o[v] = ov;
    }
} else {  // rows not vector-aligned (H not a multiple of W): one element at a time
    const uint n = (H - h0 < uint(W)) ? H - h0 : uint(W);
    for (uint i = 0; i < n; ++i) {
        float a = 0.0f;
        for (uint k = 0; k < K; ++k) {
            a += float(expert_w[t * K + k]) * float(y_expert[y_idx + int64_t(k) * H + i]);
        }
        a += gate * float(y_shared[out_idx + i]);
        if (HAS_RESIDUAL) {
            a += float(residual[out_idx + i]);
        }
        out[out_idx + i] = static_cast<T>(a);
    }
}
