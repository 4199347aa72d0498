"""The kernel choice (s2s_jax.backend): the backend's default, the environment override, the context manager."""

from __future__ import annotations

import jax
import pytest

from s2s_jax.backend import KERNELS_ENV, kernels, on_accelerator, use_kernels


def test_default_follows_the_backend(monkeypatch):
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    assert kernels() == ("cpu" if jax.default_backend() == "cpu" else "gpu")
    assert on_accelerator() == (jax.default_backend() == "gpu")


def test_environment_then_context_manager_override(monkeypatch):
    monkeypatch.setenv(KERNELS_ENV, "GPU")
    assert kernels() == "gpu"
    with use_kernels("cpu"):
        assert kernels() == "cpu"
        with use_kernels("gpu"):
            assert kernels() == "gpu"
        assert kernels() == "cpu"
    assert kernels() == "gpu"


def test_bad_values_name_the_choices(monkeypatch):
    monkeypatch.setenv(KERNELS_ENV, "tpu")
    with pytest.raises(ValueError, match=r"S2S_JAX_KERNELS='tpu' is not one of \('cpu', 'gpu'\)"):
        kernels()
    with pytest.raises(ValueError, match="use_kernels='fast'"):
        with use_kernels("fast"):
            pass
