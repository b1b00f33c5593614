"""variant="auto": the launch table's lookup (pure functions) and what the shipped table holds."""
from __future__ import annotations

import pytest

from moe_reduce import kernels, launch_table
from moe_reduce.backends import available_backends
from moe_reduce.inputs import make_inputs

TABLE = {"cards": {"H200": [
    {"dtype": "float32", "n_tokens": 1, "h": 2048, "top_k": 8, "variant": "scalar_k", "threads": 512},
    {"dtype": "float32", "n_tokens": 4096, "h": 2048, "top_k": 8, "variant": "vec_k", "threads": 256},
    {"dtype": "float32", "n_tokens": 4096, "h": 2048, "top_k": 10, "variant": "vec", "threads": 128},
    {"dtype": "bfloat16", "n_tokens": 1, "h": 2048, "top_k": 8, "variant": "vec", "threads": 64}]},
    "backend": {"H200": "cuda"}}


def test_nearest_entry_of_the_card_and_dtype():
    c = launch_table.choose("cuda", "NVIDIA H200", "float32", 2, 2048, 8, TABLE)
    assert (c.variant, c.threads) == ("scalar_k", 512) and c.source == "table: H200 float32 n_tokens=1 h=2048 top_k=8"
    assert launch_table.choose("cuda", "NVIDIA H200", "float32", 1024, 2048, 8, TABLE).variant == "vec_k"
    assert launch_table.choose("cuda", "NVIDIA H200", "float32", 16384, 4096, 10, TABLE).threads == 128
    assert launch_table.choose("cuda", "NVIDIA H200", "bfloat16", 9000, 2048, 8, TABLE).variant == "vec"


def test_unmeasured_card_uses_the_backends_measured_card_and_the_host_uses_the_rule():
    c = launch_table.choose("cuda", "NVIDIA H100 80GB HBM3", "float32", 1, 2048, 8, TABLE)
    assert c.variant == "scalar_k" and "H200 (nearest measured card)" in c.source
    for backend, device in (("host", None), ("metal", "Apple M3 Max")):
        c = launch_table.choose(backend, device, "float32", 1, 2048, 8, TABLE)
        assert (c.variant, c.threads) == launch_table.RULE and c.source.startswith(f"rule: vec_k with 256 threads "
                                                                                   f"(no card measured on {backend}")


def test_shipped_table_names_real_variants_and_sizes():
    table = launch_table.load_table()
    entries = [e for card in table["cards"].values() for e in card]
    assert entries and table["source"].keys() == table["cards"].keys()
    assert {e["variant"] for e in entries} <= set(kernels.VARIANTS)
    assert all(e["threads"] in (32, 64, 128, 256, 512) and e["dtype"] in ("float32", "bfloat16") for e in entries)


@pytest.mark.skipif("host" not in available_backends(), reason="needs a C++ compiler for the host backend")
def test_auto_reports_what_it_chose():
    _, info = kernels.moe_weighted_reduce(*make_inputs(2, 64, 4, seed=2).mlx(), backend="host", return_info=True)
    assert info.variant == "vec_k" and info.threadgroup == (32, 1, 1) and info.chosen_by.startswith("rule:")


def test_a_tuned_card_replaces_its_entries_and_keeps_the_others():
    """merged puts the tuned card in, replaces only that card's entries, and changes neither input."""
    shipped = {**TABLE, "source": {"H200": "old run"}}
    tuned = {"cards": {"H100": [TABLE["cards"]["H200"][0]]}, "source": {"H100": "new run"}, "backend": {"H100": "cuda"}}
    both = launch_table.merged(shipped, tuned)
    assert both["cards"] == {**TABLE["cards"], **tuned["cards"]} and both["source"] == {"H200": "old run",
                                                                                        "H100": "new run"}
    again = launch_table.merged(both, {**tuned, "cards": {"H100": []}})
    assert again["cards"]["H100"] == [] and again["cards"]["H200"] == TABLE["cards"]["H200"]
    assert shipped["cards"].keys() == {"H200"}  # the inputs are not changed
