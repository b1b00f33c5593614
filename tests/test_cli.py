"""The command line: help names every choice; bad input, an --out that cannot be written included, gets one
error line and exit status 2 before anything runs; `plot` redraws a saved run."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moe_reduce import cli, plots, results
from test_results import row

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """cli.main(argv) in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_names_choices_and_defaults(capsys):
    code, out, _ = run_cli(["bench", "--help"], capsys)
    assert code == 0
    out = " ".join(out.split())  # argparse wraps lines where it likes
    for word in ("float32,float16,bfloat16", "default: float32,bfloat16", "tokens,hidden,heatmap", "kernel_vec_k",
                 "torch_compile", "default: 64", "./bench-runs/<device>-<date>/", "git ignores it"):
        assert word in out, word


@pytest.mark.parametrize("argv, message", [
    (["bench", "--dtypes", "foo"], "argument --dtypes: expected a comma list of float32, float16, bfloat16; got 'foo'"),
    (["bench", "--sweeps", "bogus"], "argument --sweeps: expected a comma list of tokens, hidden, heatmap; got 'bogus'"),
    (["bench", "--graph-calls", "-5"], "argument --graph-calls: expected an integer >= 1, got '-5'"),
    (["bench", "--graph-calls", "0"], "argument --graph-calls: expected an integer >= 1, got '0'"),
    (["bench", "--impls", "numpy,nope"], "argument --impls: expected a comma list of"),
    (["bench", "--impls", "torch", "--quick"], "argument --impls: torch cannot run here"),
    (["plot", "no/such/folder"], "argument dir: expected a folder written by `python -m moe_reduce bench`, got "
                                 "no/such/folder: it does not exist"),
    (["plot", "."], "argument dir: . holds no bench.csv and bench.json"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run_sweep", measuring)
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m moe_reduce")
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def measuring(*args, **kwargs):
    """Stands in for the sweep: a test that reaches it has let bad input through to the measuring."""
    raise AssertionError("the sweep started")


def bad_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    """(--out, the reason the error gives): a file, a folder under a file, and (on Linux) a folder where even
    root may not write."""
    (tmp_path / "a_file").write_text("not a folder")
    cases = [(tmp_path / "a_file", "a_file is a file"),
             (tmp_path / "a_file" / "run", "a_file, a folder above it, is a file")]
    return cases + ([(Path("/sys/moe-run"), "/sys is not writable")] if Path("/sys").is_dir() else [])


@pytest.mark.parametrize("command", [["bench", "--quick"], ["bench", "--op", "fused", "--quick"]])
def test_bad_out_is_refused_before_measuring(command, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "run_sweep", measuring)
    for out, reason in bad_outs(tmp_path):
        code, stdout, err = run_cli([*command, "--out", str(out)], capsys)
        assert code == 2 and stdout == "" and "Traceback" not in err
        assert f"argument --out: expected a folder that can be created or written to, got {out}: " in err, err
        assert reason in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_plot_refuses_a_file(tmp_path, capsys):
    (tmp_path / "bench.csv").write_text("")
    code, _, err = run_cli(["plot", str(tmp_path / "bench.csv")], capsys)
    assert code == 2 and f"got {tmp_path / 'bench.csv'}: it is a file" in err


def test_default_out_is_ignored_by_git(tmp_path, monkeypatch):
    """The folder bench writes to by default, in the repository, is one git ignores (results/ is for runs that are
    committed)."""
    monkeypatch.chdir(REPO)
    out = results.default_out({"device": "NVIDIA H200", "date": "2026-12-05"})
    assert out.relative_to(REPO).parts[0] == "bench-runs"
    done = subprocess.run(["git", "check-ignore", "-q", str(out / "bench.csv")], cwd=REPO)
    assert done.returncode == 0, f"git does not ignore {out}"


def test_plot_redraws_a_saved_run(tmp_path, capsys):
    run = results.Run([row(n_tokens=t, median_us=1.0 + t) for t in (1, 4, 16)],
                      {"device": "dev", "gpu": None, "cpu": "dev", "kernel_backend": "host", "dtypes": ["float32"],
                       "ceiling_gbps": {"cpu": 10.0}, "empty_kernel_us": 2.0, "empty_kernel_label": "floor",
                       "plan": {"tokens_h": 2048, "top_ks": [8], "hiddens_tokens": 4, "heat_top_k": 8,
                                "heat_tokens": [1, 4], "heat_hiddens": [2048]}})
    results.save_run(run, tmp_path)
    code, out, _ = run_cli(["plot", str(tmp_path)], capsys)
    assert code == 0 and f"wrote 4 figures to {tmp_path}/" in out  # tokens and latency, PNG and SVG
    assert (tmp_path / "tokens_float32.png").stat().st_size > 1000
    assert not (tmp_path / "heatmap_float32.png").exists()  # no kernel rows, so no kernel heatmap
    assert ("hidden_float32 not drawn: no implementation was measured at two or more h at n_tokens = 4, top_k = 8 "
            "(measured: mlx at h 2048; the host path times our kernels only at n_tokens·h <= 8192)") in out
    assert "heatmap_float32 not drawn: kernel_auto was measured at 0 of the grid's sizes, fewer than 4" in out


def test_a_figure_of_one_size_is_not_drawn(tmp_path):
    """A run whose implementations each hold one n_tokens (a quick fused run on the host path, before it swept two)
    gets no tokens or latency figure, only the sentence saying why; with a second size both are drawn."""
    meta = {"device": "dev", "gpu": None, "kernel_backend": "cuda", "ceiling_gbps": {"gpu": 10.0},
            "plan": {"tokens_h": 2048, "top_ks": [8], "hiddens_tokens": 64, "sweeps": ["tokens", "hidden"]}}
    one = results.Run([row(impl=i, n_tokens=1) for i in ("kernel_fused", "kernel_two_step")], meta)
    files, why = plots.plot_run(one, tmp_path)
    assert files == [] and len(why) == len(plots.FIGURES)  # one dtype, no figure drawn
    assert ("tokens_float32 not drawn: no implementation was measured at two or more n_tokens at h = 2048 "
            "(measured: kernel_fused at n_tokens 1; kernel_two_step at n_tokens 1)") in why
    assert "heatmap_float32 not drawn: the run has no heatmap sweep" in why
    two = results.Run(one.rows + [row(impl="kernel_fused", n_tokens=4)], meta)
    files, why = plots.plot_run(two, tmp_path)
    assert sorted(f.name for f in files) == ["latency_float32.png", "latency_float32.svg", "tokens_float32.png",
                                             "tokens_float32.svg"]
