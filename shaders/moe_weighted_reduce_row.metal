// moe_weighted_reduce, row: each thread makes W consecutive outputs of one token, W * sizeof(T) = 4 bytes
// per row (W = 1 for float, 2 for half/bfloat), and issues every load it needs (router weights, gate logit,
// the K expert rows, the shared row, the residual) before it does any arithmetic. At decode sizes a call is
// a few trips to memory; a load that waits for another's result adds a trip.
//   out[t,h] = sum_k expert_w[t,k] * y_expert[t*K + k, h]
//            + sigmoid(sh_logit[t]) * y_shared[t,h]   (when HAS_SHARED)
//            + residual[t,h]                          (when HAS_RESIDUAL)
// Template: T = activation dtype; W = outputs per thread; TOP_K (> 0) = top_k, fixed when compiled (the
// loads are held in TOP_K registers); HAS_SHARED, HAS_RESIDUAL = which terms exist; ROUNDING = where sums
// meet T: 0, once, at the store; 1, after every operation, as separate MLX ops round (each weighted product,
// the sum over k, the gate, the gated shared term, each add); 2, as 1 with the running sum over k rounded
// after each add and each step of the sigmoid rounded too (MLX's CUDA and Metal half types, by source).
// The host launches it only when H is a multiple of W and n_tokens*H >= 8 (else scalar_k runs): every row
// then starts on a W-element boundary, and MLX passes the inputs in the device address space.
// Grid, counted in threads: n_tokens * H / W threads, row by row.
struct alignas(sizeof(T) * W) Row {
    T v[W];
};
const uint H = y_expert_shape[1];
const uint G = H / W;
const uint t = thread_position_in_grid.x / G;
const uint h0 = (thread_position_in_grid.x - t * G) * W;
if (t >= uint(expert_w_shape[0])) {
    return;  // CUDA launches whole blocks; Metal never starts these threads
}
const int64_t out_idx = int64_t(t) * H + h0;
const int64_t y_idx = int64_t(t) * TOP_K * H + h0;

// Loads: all of them first.
const float logit = HAS_SHARED ? float(sh_logit[t]) : 0.0f;
const Row ys = HAS_SHARED ? *(const device Row*)(y_shared + out_idx) : Row();
const Row res = HAS_RESIDUAL ? *(const device Row*)(residual + out_idx) : Row();
float wk[TOP_K];
Row yk[TOP_K];
for (int k = 0; k < TOP_K; ++k) {
    wk[k] = float(expert_w[t * TOP_K + k]);
    yk[k] = *(const device Row*)(y_expert + y_idx + int64_t(k) * H);
}

// Arithmetic. The gate uses the GPU's fast exp and divide (a few ulp): exp(-x) = inf for x < -88 gives
// 1 / inf = 0, no NaN. ROUNDED(x, level) is x rounded to T when ROUNDING >= level, else x. Rounding per op,
// the gate is computed as MLX's sigmoid computes it: e = exp(|x|) rounded to T, y = 1 / (1 + e), and 1 - y
// for x > 0; MLX's CPU leaves 1 + e and y unrounded (measured), its CUDA and Metal half types round them to T
// (level 2, read from MLX's source).
#define ROUNDED(x, level) (ROUNDING >= (level) ? float(static_cast<T>(x)) : (x))
const float below = ROUNDED(1.0f / ROUNDED(1.0f + ROUNDED(metal::exp(metal::abs(logit)), 1), 2), 2);
const float gate = !HAS_SHARED ? 0.0f
                 : ROUNDING == 0 ? metal::fast::divide(1.0f, 1.0f + metal::fast::exp(-logit))
                 : ROUNDED(logit < 0.0f ? below : 1.0f - below, 1);
Row o;
for (int i = 0; i < W; ++i) {
    float a = 0.0f;
    for (int k = 0; k < TOP_K; ++k) {
        a = ROUNDED(a + ROUNDED(wk[k] * float(yk[k].v[i]), 1), 2);
    }
    if (HAS_SHARED) {
        a = ROUNDED(ROUNDED(a, 1) + ROUNDED(gate * float(ys.v[i]), 1), 1);
    }
    if (HAS_RESIDUAL) {
        a = ROUNDED(a, 1) + float(res.v[i]);
    }
    o.v[i] = static_cast<T>(a);
}
*(device Row*)(out + out_idx) = o;
