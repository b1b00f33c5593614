"""The host-cost probe runs every case and chains each output into the next call."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import hostcost, kernels
from moe_reduce.check import rel_error
from moe_reduce.inputs import make_inputs
from moe_reduce.reference import reference_f64


def test_per_call_chains_and_counts():
    """Every call gets the previous output; the time is per call."""
    seen = []

    def step(x: mx.array) -> mx.array:
        seen.append(float(x[0]))
        return x + 1

    us = hostcost.per_call_us(step, mx.zeros((1,)), calls=10, group=4)
    assert seen == list(range(10)) and us > 0


def test_every_case_runs_and_is_summarised():
    """Each case runs (on whatever backend is here) and gets a median, min and max."""
    runs = hostcost.measure(repeats=2, calls=4, group=2)
    assert set(runs) == {"moe_weighted_reduce", "compiled call, no wrapper", "empty kernel, 5 inputs",
                         "empty kernel, 5 inputs, 16 KiB more source", "empty kernel, 5 inputs, reads 2 shapes",
                         "empty kernel, 5 inputs, our template", "empty kernel, 5 inputs, our body's length",
                         "empty kernel, 5 inputs, all three", "row body, called directly",
                         "row body, h and n_tokens written in",
                         "empty kernel, 1 input", "mx.add", "x*w+y"}
    table = hostcost.summary(runs)
    for name, row in table.items():
        assert row["min"] <= row["median"] <= row["max"] and len(runs[name]) == 2, name


@pytest.mark.parametrize("case", ["moe_weighted_reduce", "compiled call, no wrapper", "row body, called directly",
                                  "row body, h and n_tokens written in"])
def test_our_cases_compute_the_combine(case):
    """Our four cases are the real kernel: one step equals the oracle with the residual it was given."""
    args = make_inputs(1, 257, 3, seed=11)
    step, first = hostcost.cases(args.mlx())[case]
    out = np.array(step(first))
    assert rel_error(out, reference_f64(*args)) < 1e-6


def test_fixed_shapes_leaves_no_shape_and_refuses_another_body():
    """The row body loses both shape reads; a body without them is refused, naming the read."""
    fixed = hostcost.fixed_shapes(kernels.kernel_source("row"), 2048, 1)
    assert "_shape" not in fixed and "2048u" in fixed
    with pytest.raises(ValueError, match="y_expert_shape"):
        hostcost.fixed_shapes("out[0] = 0;", 2048, 1)
