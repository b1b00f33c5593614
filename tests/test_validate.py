"""validate() rejects each kind of bad call with the right exception and a message that names the
argument and shows what was expected and what was given, for NumPy and MLX arrays alike."""
from __future__ import annotations

import re

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce.reference import mlx_reference
from moe_reduce.validate import Problem, validate

T, K, H = 2, 3, 4
FLOATS = "['float64', 'float32', 'float16', 'bfloat16']"
NO_F64 = "['float32', 'float16', 'bfloat16']"


def _arr(backend: str, shape, dtype: str = "float32"):
    """A zero array of this shape and dtype name in NumPy or MLX."""
    if backend == "numpy":
        return np.zeros(shape, np.dtype(dtype))
    return mx.zeros(shape, dtype=getattr(mx, dtype), stream=mx.cpu)  # float64 exists on MLX's CPU only


def _good(backend: str) -> dict:
    """A valid call: T=2 tokens, top_k=3, h=4, with a residual."""
    return dict(
        expert_w=_arr(backend, (T, K)),
        y_expert=_arr(backend, (T * K, H)),
        sh_logit=_arr(backend, (T,)),
        y_shared=_arr(backend, (T, H)),
        residual=_arr(backend, (T, H)),
    )


# (case id, {argument: (shape, dtype)} to replace, exception type, the whole message as a regex-escaped literal)
CASES = [
    ("expert_w_1d", {"expert_w": ((T * K,), "float32")}, ValueError,
     "expert_w: expected shape (n_tokens, top_k) with both >= 1, got (6,)"),
    ("expert_w_3d", {"expert_w": ((T, K, 1), "float32")}, ValueError,
     "expert_w: expected shape (n_tokens, top_k) with both >= 1, got (2, 3, 1)"),
    ("zero_tokens", {"expert_w": ((0, K), "float32")}, ValueError,
     "expert_w: expected shape (n_tokens, top_k) with both >= 1, got (0, 3)"),
    ("zero_top_k", {"expert_w": ((T, 0), "float32")}, ValueError,
     "expert_w: expected shape (n_tokens, top_k) with both >= 1, got (2, 0)"),
    ("zero_h", {"y_expert": ((T * K, 0), "float32")}, ValueError,
     "y_expert: expected shape (n_tokens*top_k, h) = (6, h) or (n_tokens, top_k, h) = (2, 3, h) with h >= 1, "
     "got (6, 0)"),
    ("y_expert_wrong_rows", {"y_expert": ((T * K + 1, H), "float32")}, ValueError,
     "y_expert: expected shape (n_tokens*top_k, h) = (6, h) or (n_tokens, top_k, h) = (2, 3, h) with h >= 1, "
     "got (7, 4)"),
    ("y_expert_1d", {"y_expert": ((T * K * H,), "float32")}, ValueError,
     "y_expert: expected shape (n_tokens*top_k, h) = (6, h) or (n_tokens, top_k, h) = (2, 3, h) with h >= 1, "
     "got (24,)"),
    ("y_expert_3d_wrong_k", {"y_expert": ((T, K + 1, H), "float32")}, ValueError,
     "y_expert: expected shape (n_tokens*top_k, h) = (6, h) or (n_tokens, top_k, h) = (2, 3, h) with h >= 1, "
     "got (2, 4, 4)"),
    ("y_shared_wrong_h", {"y_shared": ((T, H + 1), "float32")}, ValueError,
     "y_shared: expected shape (2, 4) = (n_tokens, h), got (2, 5)"),
    ("sh_logit_column", {"sh_logit": ((T, 1), "float32")}, ValueError,
     "sh_logit: expected shape (2,) = (n_tokens,), got (2, 1)"),
    ("sh_logit_wrong_length", {"sh_logit": ((T + 1,), "float32")}, ValueError,
     "sh_logit: expected shape (2,) = (n_tokens,), got (3,)"),
    ("y_shared_wrong_tokens", {"y_shared": ((T + 1, H), "float32")}, ValueError,
     "y_shared: expected shape (2, 4) = (n_tokens, h), got (3, 4)"),
    ("sh_logit_without_y_shared", {"y_shared": None}, ValueError,
     "y_shared: expected an array because sh_logit is given (both or neither), got None"),
    ("y_shared_without_sh_logit", {"sh_logit": None}, ValueError,
     "sh_logit: expected an array because y_shared is given (both or neither), got None"),
    ("residual_wrong_shape", {"residual": ((T, H + 1), "float32")}, ValueError,
     "residual: expected shape (2, 4) = (n_tokens, h), got (2, 5)"),
    ("residual_transposed", {"residual": ((H, T), "float32")}, ValueError,
     "residual: expected shape (2, 4) = (n_tokens, h), got (4, 2)"),
    ("y_expert_int32", {"y_expert": ((T * K, H), "int32")}, TypeError,
     f"y_expert: expected a floating dtype in {FLOATS}, got int32"),
    ("expert_w_int32", {"expert_w": ((T, K), "int32")}, TypeError,
     f"expert_w: expected a floating dtype in {FLOATS}, got int32"),
    ("y_shared_dtype_mismatch", {"y_shared": ((T, H), "float16")}, TypeError,
     "y_shared: expected dtype float32 (the dtype of y_expert), got float16"),
    ("residual_dtype_mismatch", {"residual": ((T, H), "float16")}, TypeError,
     "residual: expected dtype float32 (the dtype of y_expert), got float16"),
    ("sh_logit_dtype_mismatch", {"sh_logit": ((T,), "float16")}, TypeError,
     "sh_logit: expected dtype float32 (the dtype of expert_w), got float16"),
]


@pytest.mark.parametrize("backend", ["numpy", "mlx"])
@pytest.mark.parametrize("changes,exc,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(backend, changes, exc, message):
    kwargs = _good(backend)
    for name, change in changes.items():
        kwargs[name] = None if change is None else _arr(backend, *change)
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        validate(**kwargs)


def test_cases_are_distinct():
    assert len({c[0] for c in CASES}) == len(CASES) >= 12
    assert len({c[3] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("backend", ["numpy", "mlx"])
@pytest.mark.parametrize("arg", ["expert_w", "y_expert", "sh_logit", "y_shared", "residual"])
def test_python_list_rejected(backend, arg):
    kwargs = _good(backend)
    kwargs[arg] = np.asarray(kwargs[arg]).tolist()
    msg = f"{arg}: expected an array (numpy.ndarray or mlx.core.array), got list"
    with pytest.raises(TypeError, match=f"^{re.escape(msg)}$"):
        validate(**kwargs)


@pytest.mark.parametrize("backend", ["numpy", "mlx"])
def test_float64_rejected_when_not_allowed(backend):
    kwargs = {k: _arr(backend, v.shape, "float64") for k, v in _good(backend).items()}
    assert validate(**kwargs).dtype == "float64"  # allowed by default
    msg = f"y_expert: expected a floating dtype in {NO_F64}, got float64"
    with pytest.raises(TypeError, match=f"^{re.escape(msg)}$"):
        validate(**kwargs, allowed=("float32", "float16", "bfloat16"))
    with pytest.raises(TypeError, match=f"^{re.escape(msg)}$"):
        mlx_reference(**kwargs)  # MLX's version takes no float64


@pytest.mark.parametrize("backend", ["numpy", "mlx"])
def test_good_input_gives_problem(backend):
    kwargs = _good(backend)
    assert validate(**kwargs) == Problem(T, K, H, "float32", "float32", True)
    kwargs["y_expert"] = _arr(backend, (T, K, H))
    kwargs["residual"] = None
    assert validate(**kwargs) == Problem(T, K, H, "float32", "float32", False)
    kwargs = {k: _arr(backend, v.shape, "float16") for k, v in _good(backend).items()}
    kwargs["expert_w"] = _arr(backend, (T, K))
    kwargs["sh_logit"] = _arr(backend, (T,))
    assert validate(**kwargs) == Problem(T, K, H, "float16", "float32", True)
    kwargs["sh_logit"] = kwargs["y_shared"] = None  # no gated shared expert
    assert validate(**kwargs) == Problem(T, K, H, "float16", "float32", True, shared=False)


def test_mixed_numpy_and_mlx_accepted():
    kwargs = _good("numpy")
    kwargs["y_expert"] = _arr("mlx", (T * K, H))
    assert validate(**kwargs).top_k == K
