// mix: the combine's memory traffic without its arithmetic. x holds R rows of N floats;
// out[i] = x[0][i] + ... + x[R-1][i], 16 bytes per thread per row, so each output written
// comes with R reads, as each combine output comes with top_k + 2 rows read (R = 10 at
// top_k = 8 with the shared expert and the residual). A pure-traffic kernel for the ceiling.
// x has shape (R, N) with N a multiple of 4. Template: R = rows read per row written.
typedef metal::vec<float, 4> V;
const uint n = uint(x_shape[1]) / 4;
const uint i = thread_position_in_grid.x;
if (i < n) {
    V acc = ((const device V*)x)[i];
    for (int r = 1; r < R; ++r) {
        const V v = ((const device V*)x)[int64_t(r) * n + i];
        for (int j = 0; j < 4; ++j) {
            acc[j] += v[j];
        }
    }
    ((device V*)out)[i] = acc;
}
