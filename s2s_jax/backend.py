"""Which variant of the backend-tuned kernels to trace: "cpu" (XLA CPU's) or "gpu" (what GPUs and TPUs prefer).

Six spots were tuned on XLA CPU and cost time elsewhere, or miss a faster kernel there:

- beam search's top-k (`decoding.topk.top_k`): "cpu" two passes (chunk maxima, then the k best chunks);
  "gpu" one `jax.lax.top_k` (a GPU sorts in parallel and gains nothing from the extra passes);
- log-softmax (`decoding.common.log_softmax`): "cpu" an unfused form that keeps the row max off the
  vocabulary matmul; "gpu" `jax.nn.log_softmax`;
- dropout masks (`layers.dropout.dropout_bits`): "cpu" a counter hash, 20x cheaper than threefry on CPU;
  "gpu" `jax.random.bits` (threefry is cheap on a GPU);
- Transformer attention (`layers.transformer`): "cpu" einsum, masked softmax, einsum; "gpu"
  `jax.nn.dot_product_attention` (cuDNN flash attention on a GPU in bf16/fp16);
- dense layers' weight gradients (`layers.dense`): "cpu" a custom VJP that computes x^T g as a canonical dot
  (XLA CPU's fast kernels take no other form); "gpu" JAX's own rule;
- the LSTM's recurrent weight gradient (`layers.recurrence`): "cpu" one matmul after the backward loop instead
  of one small dot per time step; "gpu" flax's scan.
"cpu" is the default on the CPU backend, "gpu" on every other one (GPU, TPU).

The choice is made when a function is traced, so it is a property of the code path, not of the arrays: a function
jitted under one choice keeps it in its compiled cache. Why a process-wide switch and not a ModelConfig field:
the variants compute the same quantity (same tokens, logits within float rounding; dropout with the same rate,
different masks), so a workdir must not depend on which one trained it, and a checkpoint trained on GPU decodes
unchanged on CPU. Resume stays exact on one backend; moving a run between backends changes its later dropout
masks, not its correctness.

Selection, first that applies: `use_kernels("cpu"|"gpu")` (a context manager, for tests and benchmarks), the
environment variable `S2S_JAX_KERNELS=cpu|gpu`, else "cpu" when `jax.default_backend()` is "cpu" and "gpu"
otherwise. `on_accelerator()` says whether a real GPU runs the code, for the choices (cuDNN) that only exist there.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import jax

KERNELS_ENV = "S2S_JAX_KERNELS"
KINDS = ("cpu", "gpu")
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("s2s_jax_kernels", default=None)


def _check(kind: str, source: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"{source}={kind!r} is not one of {KINDS}")
    return kind


def kernels() -> str:
    """The kernel variant to trace now: "cpu" or "gpu" (see the module docstring for the order of precedence)."""
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get(KERNELS_ENV, "").strip().lower()
    if env:
        return _check(env, KERNELS_ENV)
    return "cpu" if jax.default_backend() == "cpu" else "gpu"


def on_accelerator() -> bool:
    """Whether the default backend is a GPU (cuDNN kernels exist): forcing "gpu" kernels on CPU runs their
    portable XLA form."""
    return jax.default_backend() == "gpu"


@contextlib.contextmanager
def use_kernels(kind: str) -> Iterator[None]:
    """Trace with `kind`'s kernels inside the block (functions jitted inside it keep the choice)."""
    token = _forced.set(_check(kind, "use_kernels"))
    try:
        yield
    finally:
        _forced.reset(token)
