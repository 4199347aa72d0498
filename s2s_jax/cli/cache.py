"""JAX's persistent compilation cache for the command line: a second `translate` loads its executables
instead of compiling them again (seconds on a CPU for every shape and decoding method).

Where: `$S2S_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/s2s-jax/jax` (`~/.cache/s2s-jax/jax`); `S2S_JAX_CACHE_DIR=off`
turns it off. A `JAX_COMPILATION_CACHE_DIR` already set wins (JAX reads it itself). The cache is keyed by
the compiled program, its shapes, the JAX version and the device, so a stale entry is never used; JAX
writes entries atomically, so concurrent processes can share it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "S2S_JAX_CACHE_DIR"
MAX_BYTES = 2 << 30


def cache_dir() -> Path | None:
    """The directory the CLI caches compilations in, or None when turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "none") else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "s2s-jax" / "jax"


def enable_compilation_cache() -> None:
    """Point JAX at the cache (before the first compilation), caching every executable however fast it compiled:
    a decoder's many small programs add up to most of a short run's start."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: run without the cache rather than fail
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # least recently used entries go first
