// read: reads every byte of x once, 16 bytes per thread, and writes almost nothing.
// One of the pure-traffic kernels the benchmark's ceiling is taken from (with copy.metal
// and mix.metal): it shows how fast memory serves reads alone.
// The store never happens for finite inputs (x is filled with ones), but the compiler cannot
// know that, so the loads stay.
typedef metal::vec<float, 4> V;
const uint i = thread_position_in_grid.x;
if (i < uint(x_shape[0]) / 4) {
    const V v = ((const device V*)x)[i];
    if (v[0] + v[1] + v[2] + v[3] == -1.0f) {
        out[0] = v[0];
    }
}
