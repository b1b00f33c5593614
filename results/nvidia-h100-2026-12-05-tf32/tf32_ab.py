"""A/B: does MLX's TF32 matmul (MLX_ENABLE_TF32, default 1) make patched and unpatched float32 logits differ on
CUDA? Run twice, with MLX_ENABLE_TF32=1 and =0: `MLX_ENABLE_TF32=0 PYTHONPATH=lib python3 tf32_ab.py OUT.csv`.
Same check as model_bench (2 layers at published widths, a prompt of 16 tokens then 8 cached decode steps)."""
import csv
import os
import sys
from dataclasses import asdict

from moe_reduce.model_bench import check_row, tokens
from moe_reduce.model_configs import CONFIGS, build_model

rows = []
for name in CONFIGS:
    model = build_model(name, n_layers=2, dtype="float32")
    prompt = tokens(16, model.args.vocab_size)
    for fuse in (False, True):
        row = dict(tf32=os.environ.get("MLX_ENABLE_TF32", "unset"), model=name, fuse_norm=fuse,
                   **check_row(model, prompt, fuse, "cuda", None))
        print(row, flush=True)
        rows.append(row)
with open(sys.argv[1], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
