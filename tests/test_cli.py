"""The command line: help names every choice; bad input gets one error line and exit status 2 before
anything runs; `plot` redraws a saved run."""
from __future__ import annotations

import pytest

from moe_reduce import cli, results
from test_results import row


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
    for word in ("float32,bfloat16", "tokens,hidden,heatmap", "kernel_vec_k", "torch_compile", "default: 64",
                 "./results/<device>-<date>/"):
        assert word in out, word


@pytest.mark.parametrize("argv, message", [
    (["bench", "--dtypes", "foo"], "argument --dtypes: expected a comma list of float32, bfloat16; got 'foo'"),
    (["bench", "--sweeps", "bogus"], "argument --sweeps: expected a comma list of tokens, hidden, heatmap; got 'bogus'"),
    (["bench", "--graph-calls", "-5"], "argument --graph-calls: expected an integer >= 1, got '-5'"),
    (["bench", "--graph-calls", "0"], "argument --graph-calls: expected an integer >= 1, got '0'"),
    (["bench", "--impls", "numpy,nope"], "argument --impls: expected a comma list of"),
    (["bench", "--impls", "torch", "--quick"], "argument --impls: torch cannot run here"),
    (["plot", "no/such/folder"], "argument dir: no/such/folder holds no bench.csv and bench.json"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m moe_reduce")
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_plot_redraws_a_saved_run(tmp_path, capsys):
    run = results.Run([row(n_tokens=t, median_us=1.0 + t) for t in (1, 4, 16)],
                      {"device": "dev", "gpu": None, "cpu": "dev", "kernel_backend": "host", "dtypes": ["float32"],
                       "ceiling_gbps": {"cpu": 10.0}, "empty_kernel_us": 2.0, "empty_kernel_label": "floor",
                       "plan": {"tokens_h": 2048, "top_ks": [8], "hiddens_tokens": 4, "heat_top_k": 8,
                                "heat_tokens": [1, 4], "heat_hiddens": [2048]}})
    results.save_run(run, tmp_path)
    code, out, _ = run_cli(["plot", str(tmp_path)], capsys)
    assert code == 0 and f"wrote 6 figures to {tmp_path}/" in out
    assert (tmp_path / "tokens_float32.png").stat().st_size > 1000
    assert not (tmp_path / "heatmap_float32.png").exists()  # no kernel rows, so no kernel heatmap
