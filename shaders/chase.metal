// chase: one thread follows a chain of indices through `next`, STEPS times, from start[0], and writes where
// it ended. Each load's address is the value the one before returned, so no two loads are ever in flight at
// once: the kernel's time over STEPS is the latency of one load from wherever `next` sits (L1, L2 or DRAM).
// `next` holds a single cycle that visits one element per 128-byte line (latency.chase_chain). Launches are
// chained, each starting where the last one ended, so no line is read twice until the cycle comes round.
// Template: STEPS = loads in the chain. Grid: one thread.
uint j = start[0];
for (uint s = 0; s < uint(STEPS); ++s) {
    j = next[j];
}
out[0] = j;
