"""What a benchmark ran on, and the float32 matmul rate this machine reaches: the yardstick for achieved FLOP/s.

A model's achieved FLOP/s means little without the machine's ceiling. The
ceiling used here is measured, not taken from a data sheet: a large square
float32 matmul, jitted in JAX and in torch, timed over several repeats after a
warm-up (best repeat, since interference from other jobs only ever slows it
down). Shared by the bench scripts that report rates.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Date, CPU, cores, load and the framework versions, for the header of a benchmark's output."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; {cpu_model()}, "
            f"{os.cpu_count()} cores, load average {load:.1f}; jax {jax.__version__} ({jax.default_backend()}), "
            f"Python {platform.python_version()}")


def best_seconds(fn: Callable[[], object], reps: int) -> float:
    """Fastest of `reps` calls of `fn`, after one warm-up call (compilation, allocation)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def jax_matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of a jitted float32 [n, n] @ [n, n] (2 n^3 flops) with XLA's default CPU threads."""
    a, b = (jnp.asarray(np.random.default_rng(i).standard_normal((n, n)), jnp.float32) for i in (0, 1))
    dot = jax.jit(jnp.dot)
    return 2 * n**3 / best_seconds(lambda: dot(a, b).block_until_ready(), reps) / 1e9


def torch_matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of torch.matmul on float32 [n, n] tensors with torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    return 2 * n**3 / best_seconds(lambda: torch.matmul(a, b, out=out), reps) / 1e9
