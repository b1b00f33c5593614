"""Does rounding once (ROUNDING = 0) compile to the machine code the row and fused bodies had before ROUNDING
existed? For every row and fused unit nvrtc_check makes with ROUNDING = 0 (and, fused, the sum of squares in our
order: MLX_CUDA_SUM false), the same unit built from the body at an earlier commit (its template without ROUNDING),
both compiled by NVRTC for sm_90a and disassembled; prints how many units have identical instruction lists, and
names any that differ. No GPU needed (see cpu-2026-12-06-sass.py).

    PYTHONPATH=lib python results/cpu-2026-12-07-sass-rounding.py --mlx-source MLX_CHECKOUT --before 72c8fe6
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
from pathlib import Path

from moe_reduce import kernels, nvrtc_check
from moe_reduce.backends import read_source, without_comments

FILES = {"row": "moe_weighted_reduce_row.metal", "fused": kernels.FUSED_FILE}


def sass_tools():
    """cpu-2026-12-06-sass.py, loaded as a module (its cubin and instructions)."""
    spec = importlib.util.spec_from_file_location("sass", Path(__file__).with_name("cpu-2026-12-06-sass.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def earlier(unit: nvrtc_check.Unit, bodies: dict[str, tuple[str, str]]) -> str:
    """The unit's source with the body it had at the earlier commit, and no ROUNDING or MLX_CUDA_SUM constant."""
    now, then = bodies[unit.label.split()[0]]
    source = unit.source.replace(now, then)
    assert then in source, unit.label
    return source.replace("  constexpr int ROUNDING = 0;\n", "").replace("  constexpr bool MLX_CUDA_SUM = false;\n", "")


def main() -> None:
    """Compare every ROUNDING = 0 row and fused unit with its earlier self."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlx-source", type=Path, required=True)
    parser.add_argument("--before", required=True, help="a commit whose shaders have no ROUNDING")
    args = parser.parse_args()
    tools, root = sass_tools(), nvrtc_check.cuda_root()
    nv = nvrtc_check.Nvrtc(root, args.mlx_source)
    bodies = {}
    for kind, file in FILES.items():
        then = subprocess.run(["git", "show", f"{args.before}:shaders/{file}"], capture_output=True, text=True,
                              check=True).stdout
        bodies[kind] = (without_comments(read_source(file)), without_comments(then))
    same, differ = 0, []
    for unit in nvrtc_check.units():
        if not unit.label.startswith(("row (row) ", "fused ")) or any(m in unit.label for m in ("ROUNDING=", "MLX_")):
            continue  # another body (row falls back to scalar_k where h is odd), rounding per op, or MLX's sum order
        new, old = (tools.instructions(root, tools.cubin(nv, src)) for src in (unit.source, earlier(unit, bodies)))
        if new == old:
            same += 1
        else:
            differ.append(f"{unit.label}: {len(old)} -> {len(new)} instructions")
    print(f"{same} of {same + len(differ)} row and fused units (ROUNDING = 0) compile to the same instructions "
          f"as at {args.before}")
    print("\n".join(differ))


if __name__ == "__main__":
    main()
