"""tune.pick and table_entries: which launch the table keeps, from measured samples (no GPU needed)."""
from __future__ import annotations

from pathlib import Path

from moe_reduce import tune
from moe_reduce.tune import Sample

H100_TUNE = Path(__file__).resolve().parents[1] / "results" / "nvidia-h100-2026-12-05-small" / "tune.csv"


def sample(variant: str, threads: int, us: float, spread: float) -> Sample:
    """One float32 sample at 16 tokens, h 2048, top_k 8."""
    return Sample("float32", 16, 2048, 8, variant, threads, us, spread)


def test_a_slow_choice_with_one_slow_repeat_does_not_pass_for_fast():
    """The H100's tune saw scalar/32 at 3.86 µs with one repeat far off (spread 62); row/256 took 2.72 µs. The
    simpler scalar must not win through its own noise."""
    samples = [sample("scalar", 32, 3.856, 62.1), sample("row", 256, 2.72, 0.012), sample("row", 512, 2.72, 0.029)]
    assert tune.pick(samples) == samples[1]  # row at 256 threads: as fast, and 256 is the default size


def test_the_simplest_choice_within_the_fastests_noise_wins():
    """Within 1% of the fastest (its spread is smaller), the simpler variant is kept; 6% slower is not close."""
    fast = sample("row", 256, 2.00, 0.002)
    assert tune.pick([fast, sample("scalar_k", 256, 2.015, 0.0)]).variant == "scalar_k"
    assert tune.pick([fast, sample("scalar_k", 256, 2.12, 0.0)]).variant == "row"


def test_a_noisy_fastest_widens_the_window_only_up_to_the_cap():
    """A fastest choice with a 40% spread lets choices within NOISE_CAP through, not within 40%."""
    fast = sample("row", 256, 2.00, 0.40)
    assert tune.pick([fast, sample("scalar", 256, 2.09, 0.0)]).variant == "scalar"
    assert tune.pick([fast, sample("scalar", 256, 2.2, 0.0)]).variant == "row"


def test_the_shipped_h100_table_is_the_pick_of_its_committed_samples():
    """lib/moe_reduce/launch_table.json's H100 entries are table_entries of the committed tune.csv."""
    shipped = tune.kernels.launch_table.load_table()["cards"]["H100"]
    assert shipped == tune.table_entries(tune.read_samples(H100_TUNE))
