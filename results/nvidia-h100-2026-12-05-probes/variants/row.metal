// row (probe): the combine with W outputs per thread. GRID2D: a 2-D grid, x counts the W-wide column groups
// of a row and y the token, so no thread divides to find its token and no token guard is needed (the grid's
// y is n_tokens exactly); else a 1-D grid of n_tokens * h / W threads, as the shipped bodies use.
// Every load (router weights, gate logit, expert rows, shared row, residual) is written before any arithmetic.
// Template: T, W (outputs per thread: 1, 2, 4, 8 or 16; W * sizeof(T) bytes per row per thread), TOP_K (> 0),
// HAS_SHARED, HAS_RESIDUAL, GRID2D, HH (0: h read from y_expert_shape[1]; > 0: h fixed when compiled),
// FAST (1: metal::fast::exp and metal::fast::divide for the gate: no call to a slow path).
// h must be a multiple of W (the probe's sizes are).
struct alignas(sizeof(T) * W) Row {
    T v[W];
};
const uint H = HH > 0 ? uint(HH) : uint(y_expert_shape[1]);
const uint G = H / W;
const uint t = GRID2D ? thread_position_in_grid.y : thread_position_in_grid.x / G;
const uint g = GRID2D ? thread_position_in_grid.x : thread_position_in_grid.x - t * G;
if (GRID2D ? g >= G : t >= uint(expert_w_shape[0])) {
    return;
}
const int64_t out_idx = int64_t(t) * H + g * W;
const int64_t y_idx = int64_t(t) * TOP_K * H + g * W;
const float logit = HAS_SHARED ? float(sh_logit[t]) : 0.0f;
const Row ys = HAS_SHARED ? *(const device Row*)(y_shared + out_idx) : Row();
const Row res = HAS_RESIDUAL ? *(const device Row*)(residual + out_idx) : Row();
float wk[TOP_K];
Row yk[TOP_K];
for (int k = 0; k < TOP_K; ++k) {
    wk[k] = float(expert_w[t * TOP_K + k]);
    yk[k] = *(const device Row*)(y_expert + y_idx + int64_t(k) * H);
}
const float gate = !HAS_SHARED ? 0.0f
                 : FAST ? metal::fast::divide(1.0f, 1.0f + metal::fast::exp(-logit))
                        : 1.0f / (1.0f + metal::exp(-logit));
Row o;
for (int i = 0; i < W; ++i) {
    float a = 0.0f;
    for (int k = 0; k < TOP_K; ++k) {
        a += wk[k] * float(yk[k].v[i]);
    }
    if (HAS_SHARED) {
        a += gate * float(ys.v[i]);
    }
    if (HAS_RESIDUAL) {
        a += float(res.v[i]);
    }
    o.v[i] = static_cast<T>(a);
}
*(device Row*)(out + out_idx) = o;
