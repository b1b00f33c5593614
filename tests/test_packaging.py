"""The package ships its kernel sources and the CPU runner's headers, and finds them when installed from a
wheel (not an editable checkout)."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys, moe_reduce, msl_host
from moe_reduce import kernels
assert moe_reduce.__file__.startswith(sys.argv[1]), moe_reduce.__file__
assert msl_host.__file__.startswith(sys.argv[1]), msl_host.__file__
for name in kernels.VARIANTS:
    assert kernels.kernel_source(name) == open(sys.argv[2] + "/shaders/" + kernels.VARIANTS[name].file).read()
from moe_reduce.inputs import make_inputs
from moe_reduce.reference import reference_f64
from moe_reduce.check import rel_error
args = make_inputs(2, 40, 3, seed=1).mlx()
out = kernels.moe_weighted_reduce(*args, backend="host", init_value=float("nan"))
print(rel_error(out, reference_f64(*args)))
"""


def test_wheel_holds_sources_and_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("moe_reduce-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shaders = {f"moe_reduce/shaders/{p.name}" for p in (REPO / "shaders").iterdir() if p.suffix in (".metal", ".cuh")}
    headers = {f"msl_host/{p.relative_to(REPO / 'lib' / 'msl_host')}" for p in (REPO / "lib" / "msl_host").rglob("*.h")}
    assert shaders and headers and shaders | headers <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-c", CHECK, str(site), str(REPO)], cwd=elsewhere, capture_output=True,
                          text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1e-6


def test_package_imports_without_mlx_lm():
    """mlx-lm is an extra: every module but the lesson 06 ones imports without it, and those say what is missing."""
    code = """
import sys
sys.modules["mlx_lm"] = None  # as if not installed
import moe_reduce.cli, moe_reduce.kernels, moe_reduce.model_configs, moe_reduce.exercises
for name in ("integrate", "model_check", "model_bench"):
    try:
        __import__("moe_reduce." + name)
    except ImportError as e:
        assert "mlx_lm" in str(e), e
    else:
        raise AssertionError(name + " imported without mlx-lm")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "lib"), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr
