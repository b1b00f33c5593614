"""Our kernels patched into mlx-lm models (moe_reduce.integrate), against the same models unpatched: tiny
configurations of the three supported model types, a prefill and 8 cached decode steps on the same weights and
tokens; errors, unpatching and the parameter tree."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

pytest.importorskip("mlx_lm")

from mlx_lm.models import mixtral  # noqa: E402

from moe_reduce import integrate, kernels  # noqa: E402
from moe_reduce.backends import available_backends  # noqa: E402
from moe_reduce.model_check import STEPS, agreement, decode  # noqa: E402
from moe_reduce.model_configs import build_model  # noqa: E402

BACKEND = available_backends()[0]
ON_CPU = mx.default_device() == mx.cpu
# name: (n_layers, changes to the tiny configuration, MoE layers); Qwen3-30B-A3B gets a dense middle layer
MODELS = {
    "Qwen1.5-MoE-A2.7B": (2, {}, 2),
    "Qwen3-30B-A3B": (3, {"mlp_only_layers": [1]}, 2),
    "Qwen3-Next-80B-A3B": (2, {}, 2),
}
PROMPT = mx.array(np.random.default_rng(0).integers(0, 512, 12))


def tiny(name: str, dtype: str = "float32") -> nn.Module:
    """The tiny model of MODELS[name] in a dtype (the same weights for every dtype)."""
    n_layers, changes, _ = MODELS[name]
    return build_model(name, n_layers=n_layers, dtype=dtype, tiny=True, **changes)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: tiny(name) for name in MODELS}


def state(model: nn.Module) -> tuple[list, list]:
    """Every module's class, and the parameter tree as (path, array object) pairs."""
    return [type(m) for m in model.modules()], [(k, id(v)) for k, v in tree_flatten(model.parameters())]


def counting(monkeypatch, name: str) -> list:
    """Count the calls of kernels.<name> (each call appends to the returned list)."""
    calls, real = [], getattr(kernels, name)
    monkeypatch.setattr(kernels, name, lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


@pytest.mark.parametrize("fuse_norm", [False, True])
@pytest.mark.parametrize("name", list(MODELS))
def test_float32_logits_match_unpatched(models, monkeypatch, name, fuse_norm):
    """Same weights, same tokens: ||Δlogits|| / ||logits|| <= 1e-4 at every step, the same greedy tokens, and our
    kernel ran once per MoE layer per call (two patched runs of 1 + STEPS calls each)."""
    calls = counting(monkeypatch, "moe_combine_rmsnorm" if fuse_norm else "moe_weighted_reduce")
    fallbacks = []
    real_norm = nn.RMSNorm.__call__
    monkeypatch.setattr(nn.RMSNorm, "__call__", lambda self, x: (
        fallbacks.append(1) if isinstance(self, integrate.HandedRMSNorm) else None) or real_norm(self, x))
    result = agreement(models[name], PROMPT, fuse_norm=fuse_norm, backend=BACKEND)
    layers = MODELS[name][2]
    assert result.layers == layers
    assert result.distance <= 1e-4, result
    assert result.same_tokens and result.first_difference is None
    assert len(calls) == 2 * (1 + STEPS) * layers
    assert not fallbacks  # every norm after a fused layer took the state handed to it


@pytest.mark.skipif(ON_CPU, reason="MLX's CPU backend runs gather_mm (mlx-lm's SwitchGLU experts) in float32 only; "
                                   "bfloat16 runs on a GPU (moe_reduce.model_bench checks it on CUDA)")
@pytest.mark.parametrize("fuse_norm", [False, True])
@pytest.mark.parametrize("name", list(MODELS))
def test_bfloat16_tokens_and_distance_to_float32(models, name, fuse_norm):
    """bfloat16: the same greedy tokens patched and unpatched, and the patched model no farther from a float32
    run of the same weights than the unpatched one (25% slack)."""
    ref = decode(models[name], PROMPT)
    result = agreement(tiny(name, "bfloat16"), PROMPT, fuse_norm=fuse_norm, backend=BACKEND, ref=ref)
    assert result.same_tokens
    assert result.patched_to_ref <= 1.25 * result.unpatched_to_ref, result


def test_float32_reference_counts_its_own_tokens(models):
    """Against a float32 reference of the same model, both versions pick its top token at every row, at distance
    under 1e-4 (the bfloat16 check's columns, on the CPU runner)."""
    model = models["Qwen1.5-MoE-A2.7B"]
    result = agreement(model, PROMPT, fuse_norm=True, backend=BACKEND, ref=decode(model, PROMPT))
    assert result.unpatched_ref_tokens == result.patched_ref_tokens == 1 + STEPS
    assert result.unpatched_to_ref == 0.0 and result.patched_to_ref <= 1e-4


def test_unpatch_restores_classes_and_outputs(models):
    model = models["Qwen1.5-MoE-A2.7B"]
    before, logits = state(model), decode(model, PROMPT, 2)[0]
    assert integrate.patch_mlx_lm(model, fuse_norm=True, backend=BACKEND) == 2
    assert state(model)[0] != before[0]
    assert integrate.unpatch_mlx_lm(model) == 2
    assert state(model) == before
    assert not any(n in m.__dict__ for m in model.modules() for n in ("moe_backend", "next_norm", "handed"))
    np.testing.assert_array_equal(decode(model, PROMPT, 2)[0], logits)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_tree_unchanged(models, name):
    """The patched model holds the same parameters, the same array objects, at the same paths."""
    model = models[name]
    params = state(model)[1]
    with integrate.patched(model, fuse_norm=True, backend=BACKEND):
        assert state(model)[1] == params
        assert all(isinstance(m, integrate.FusedDecoderLayer) for m in model.layers if "switch_mlp" in m.mlp)
    assert state(model)[1] == params


def test_unsupported_model_is_refused_unchanged():
    model = mixtral.Model(mixtral.ModelArgs(model_type="mixtral", vocab_size=64, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    before = state(model)
    with pytest.raises(ValueError, match=r"^model: expected an mlx-lm model of type qwen2_moe or qwen3_moe or "
                                         r"qwen3_next, got 'mixtral'$"):
        integrate.patch_mlx_lm(model)
    assert state(model) == before


@pytest.mark.parametrize("call, error, match", [
    (dict(backend="nope"), ValueError, r"^backend: expected 'auto' or one of"),
    (dict(backend="metal" if "metal" not in available_backends() else "cuda"), RuntimeError, r"is not available here"),
    (dict(rounding="twice"), ValueError, r"^rounding: expected one of \['once', 'per_op'\], got 'twice'$"),
])
def test_bad_backend_or_rounding_leaves_the_model_unchanged(models, call, error, match):
    model = models["Qwen3-30B-A3B"]
    before = state(model)
    with pytest.raises(error, match=match):
        integrate.patch_mlx_lm(model, fuse_norm=True, **call)
    assert state(model) == before


def test_second_patch_is_refused_and_context_unpatches_on_error(models):
    model = models["Qwen3-Next-80B-A3B"]
    before = state(model)
    with pytest.raises(KeyError), integrate.patched(model, backend=BACKEND):
        with pytest.raises(ValueError, match=r"^model: expected an unpatched model, got one already patched"):
            integrate.patch_mlx_lm(model, backend=BACKEND)
        raise KeyError("leaves the with block")
    assert state(model) == before


def test_sharded_blocks_and_pipelined_models_are_left_unfused(models):
    """A sharded MoE block is not patched; a pipelined model gets its combines patched but no layer fused."""
    model = models["Qwen3-30B-A3B"]
    moe = [layer for layer in model.layers if "switch_mlp" in layer.mlp]
    moe[0].mlp.sharding_group = "a group"  # patch_mlx_lm reads only whether one is set
    try:
        with integrate.patched(model, fuse_norm=True, backend=BACKEND) as n:
            assert n == 1 and not isinstance(moe[0], integrate.FusedDecoderLayer)
            assert isinstance(moe[1], integrate.FusedDecoderLayer)
    finally:
        moe[0].mlp.sharding_group = None
    model.model.pipeline_size = 2
    try:
        with integrate.patched(model, fuse_norm=True, backend=BACKEND) as n:
            assert n == 2 and not any(isinstance(layer, integrate.FusedDecoderLayer) for layer in model.layers)
            assert all(isinstance(layer.mlp, integrate.CombinedMoeBlock) for layer in moe)
    finally:
        model.model.pipeline_size = 1
