"""The kernel bodies (.metal) and the CUDA compatibility header; installed as the package moe_reduce.shaders,
so the sources travel with moe_reduce (this file only makes the folder a package)."""
