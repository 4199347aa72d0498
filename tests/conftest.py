"""Test-wide settings: JAX's persistent compilation cache goes to a fresh directory per test process.

Why: the command-line verbs turn on the persistent cache (s2s_jax/cli/cache.py), in ~/.cache/s2s-jax by
default, and once on it holds for every compilation of the process. The suite would then write into the
user's cache, and its run time would depend on what earlier runs left there (a second `make test` on the
same machine ran 30% faster than a fresh machine would). Within one run the cache still serves each process.
"""

import os
import tempfile

os.environ.setdefault("S2S_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="s2s-jax-test-cache-"))
