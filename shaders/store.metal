// store: one thread writes a number it takes from its kernel parameters (x's shape) and loads nothing from
// memory. Launched like empty.metal, which reads no parameter, it shows what reading the parameters and one
// store add to a launch (on an H100, in MLX's CUDA graphs: 0.29-0.58 us over empty.metal; under Triton
// 0.064 us: results/nvidia-h100-2026-12-06-small/README.md, calls 7-8).
if (thread_position_in_grid.x == 0) {
    out[0] = float(x_shape[0]);
}
