// copy: out = x, 16 bytes per thread (x holds a multiple of 4 floats).
// Measured beside the combine kernels for comparison: like them, it reads and
// writes every byte once. It is a reference point, not a speed limit: another
// kernel can move bytes faster (vec_k does in the committed H200 runs).
typedef metal::vec<float, 4> V;
const uint i = thread_position_in_grid.x;
if (i < uint(x_shape[0]) / 4) {
    ((device V*)out)[i] = ((const device V*)x)[i];
}
