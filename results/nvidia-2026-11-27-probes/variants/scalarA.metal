// moe_weighted_reduce, scalar: one thread per output element.
//   out[t,h] = sum_k expert_w[t,k] * y_expert[t*K + k, h]
//            + sigmoid(sh_logit[t]) * y_shared[t,h]   (when HAS_SHARED)
//            + residual[t,h]                          (when HAS_RESIDUAL)
// This is a kernel *body*: MLX writes the signature from the inputs
// (expert_w, y_expert, sh_logit, y_shared, residual) and outputs (out).
// Template: T = activation dtype (y_*, residual, out); HAS_SHARED, HAS_RESIDUAL = bool.
// Grid, counted in threads: one thread per output, n_tokens * h of them, row by row.
const uint H = y_expert_shape[1];
const uint K = expert_w_shape[1];
const uint i = thread_position_in_grid.x;
const uint t = i / H;
const uint h = i - t * H;
if (t >= uint(expert_w_shape[0])) {
    return;  // CUDA launches whole blocks; Metal never starts these threads
}

// 64-bit offsets: T*K*H passes 2^32 elements at prefill sizes.
const int64_t out_idx = int64_t(t) * H + h;
const int64_t y_idx = int64_t(t) * K * H + h;

float acc = 0.0f;
for (uint k = 0; k < K; ++k) {
    acc += float(expert_w[t * K + k]) * float(y_expert[y_idx + int64_t(k) * H]);
}
if (HAS_SHARED) {
    // exp(-x) overflows to inf for x < -88 and the gate becomes 1/inf = 0: no NaN.
    const float gate = 1.0f / (1.0f + metal::exp(-float(sh_logit[t])));
    acc += gate * float(y_shared[out_idx]);
}
if (HAS_RESIDUAL) {
    acc += float(residual[out_idx]);
}
out[out_idx] = static_cast<T>(acc);
