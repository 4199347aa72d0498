"""`python -m s2s_jax.cli ...`, the same as `s2s-jax ...`."""

import sys

from s2s_jax.cli import main

sys.exit(main())
