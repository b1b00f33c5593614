// empty: does no work. Launched like the real kernel, it measures what a dispatch
// costs by itself (it reads none of its parameters; see store.metal for one that does).
// The store never happens at run time (the grid is far smaller than 2^30) but keeps
// the compiler from removing the kernel's only output.
if (thread_position_in_grid.x == 0x40000000u) {
    out[0] = x[0];
}
