"""moe-reduce: the fused MoE weighted-reduce kernel, from formula to memory speed."""
