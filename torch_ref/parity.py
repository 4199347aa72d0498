"""JAX vs torch parity: the same weights give the same logits and gradients.

Used by the test suite and by `s2s-jax parity`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

import torch_ref
from s2s_jax.checks import GRAD_RTOL, LOGIT_ATOL, logits_of
from s2s_jax.config import ModelConfig
from s2s_jax.models import build_model
from torch_ref.convert import flax_to_torch


def torch_logits(tmodel: torch.nn.Module, batch: dict[str, np.ndarray]) -> torch.Tensor:
    t_in = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}
    out = tmodel(t_in["src"], t_in["src_lengths"], t_in["tgt_in"])
    return out[0] if isinstance(out, tuple) else out


def check_parity(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray]) -> tuple[float, float]:
    """Assert logits (abs) and parameter gradients (relative) agree; return (max abs, max rel)."""
    model = build_model(cfg)
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    tmodel.eval()

    logits = logits_of(cfg, params, batch)
    t_logits = torch_logits(tmodel, batch)
    err = float(np.abs(t_logits.detach().numpy() - logits).max())
    assert err <= LOGIT_ATOL, f"logits differ by {err}"

    w = np.random.default_rng(1000).standard_normal(logits.shape).astype(np.float32)

    def loss(p):
        out = model.apply({"params": p}, batch["src"], batch["src_lengths"], batch["tgt_in"])
        return jnp.sum(out * w)

    grads = flax_to_torch(cfg, jax.jit(jax.grad(loss))(params))  # jitted: faster than op-by-op on CPU
    tmodel.zero_grad()
    (t_logits * torch.from_numpy(w)).sum().backward()
    torch_grads = {
        name: p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
        for name, p in tmodel.named_parameters()
    }
    # Relative to the parameter's own gradient scale, floored at 1e-3 of the model's largest
    # gradient: some gradients are exactly zero in theory (attention key biases, which softmax's
    # shift invariance cancels) and hold only rounding noise in both frameworks.
    floor = 1e-3 * max(float(np.abs(g).max()) for g in torch_grads.values())
    worst = 0.0
    for name, g_t in torch_grads.items():
        g_j = grads[name].numpy()
        rel = float(np.abs(g_t - g_j).max() / max(float(np.abs(g_t).max()), floor, 1e-12))
        assert rel <= GRAD_RTOL, f"gradient of {name} differs: rel {rel}"
        worst = max(worst, rel)
    return err, worst


def parity_report(cfg: ModelConfig, *, batch: int = 4, src_len: int = 9, tgt_len: int = 7, seed: int = 0) -> dict:
    """Run every contract check on random padded inputs; return the measured errors.

    Raises AssertionError (with the failing quantity) if any check is out of tolerance.
    """
    from s2s_jax.checks import check_padding_invariant, check_step_equals_full, init_params, random_batch

    # The padding check adds 3 columns; stay within positional limits (cfg.max_len) with them.
    src_len, tgt_len = min(src_len, cfg.max_len - 3), min(tgt_len, cfg.max_len - 3)
    data = random_batch(cfg, seed=seed, batch=batch, src_len=src_len, tgt_len=tgt_len)
    params = init_params(cfg, data, seed=seed)
    logits_abs, grad_rel = check_parity(cfg, params, data)
    return {
        "logits_max_abs": logits_abs,
        "grad_max_rel": grad_rel,
        "step_vs_full_max_abs": check_step_equals_full(cfg, params, data),
        "padding_max_abs": check_padding_invariant(cfg, params, data),
        "tolerances": {"logits_abs": LOGIT_ATOL, "grad_rel": GRAD_RTOL},
    }


def check_torch_step_equals_full(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray]) -> float:
    """The torch mirror's own `decode_step` T times == its teacher-forced `decode` (the ONNX step graph's source)."""
    tmodel = torch_ref.build_model(cfg).eval()
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    b = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}
    steps_needed = b["tgt_in"].shape[1]
    with torch.no_grad():
        enc = tmodel.encode(b["src"], b["src_lengths"])
        full = tmodel.decode(enc, b["tgt_in"])
        full = full[0] if isinstance(full, tuple) else full
        state, steps = tmodel.init_decode_state(enc, max_decode_len=steps_needed), []
        for t in range(steps_needed):
            logits, state = tmodel.decode_step(enc, b["tgt_in"][:, t], state)[:2]
            steps.append(logits)
    err = float((torch.stack(steps, dim=1) - full).abs().max())
    assert err <= LOGIT_ATOL, f"torch decode_step differs from decode by {err}"
    return err
