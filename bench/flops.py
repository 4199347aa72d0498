"""FLOPs of a jitted step, three ways: XLA's cost analysis, a matmul count over its jaxpr, and 6 x parameters.

- XLA (`compiled.cost_analysis()["flops"]`) counts every op
  of the compiled step, but a `while` loop's body only once: for the RNN and
  attention families, whose time steps run in `lax.scan`, it misses the
  recurrent work of all steps but one.
- The jaxpr count walks the traced step (forward, backward and optimizer) and
  adds 2·M·N·K for every `dot_general` and the matching count for every
  convolution, multiplying `scan` bodies by their length. Elementwise work is
  left out, so this is the matmul work: what a matmul peak can be compared to.
- 6 N: the usual "2 forward + 4 backward flops per parameter per token", with
  encoder parameters charged per source token and the rest per target token,
  embedding tables excluded. It knows nothing about attention over positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax


def xla_flops(compiled: Any) -> float:
    """A compiled step's (`jit(f).lower(...).compile()`) flop count according to XLA (loop bodies once, see above)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per computation
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def _sub_jaxprs(value: Any) -> Iterator[Any]:
    """Jaxprs held in an equation parameter (closed or open, alone or in tuples)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _eqn_flops(eqn: Any) -> float:
    name = eqn.primitive.name
    if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs_shape = eqn.invars[0].aval.shape
        k = math.prod(lhs_shape[d] for d in lhs_contract)
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
    if name == "conv_general_dilated":
        rhs_shape = eqn.invars[1].aval.shape  # kernel: out features, in features / groups, spatial... in some order
        out_features = rhs_shape[eqn.params["dimension_numbers"].rhs_spec[0]]
        per_output = math.prod(rhs_shape) / out_features  # (in / groups) * prod(window)
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
    subs = [j for v in eqn.params.values() for j in _sub_jaxprs(v)]
    if not subs:
        return 0.0
    if name == "cond":  # one branch runs: count the most expensive
        return max(jaxpr_flops(j) for j in subs)
    total = sum(jaxpr_flops(j) for j in subs)
    return total * eqn.params["length"] if name == "scan" else total  # while: trip count unknown, body once


def jaxpr_flops(jaxpr: Any) -> float:
    """Matmul and convolution flops of an (open) jaxpr, scan bodies times their length."""
    return sum(_eqn_flops(eqn) for eqn in jaxpr.eqns)


def matmul_flops(fn: Callable, *args: Any) -> float:
    """Matmul and convolution flops of one call of `fn(*args)`, from its jaxpr (see the module docstring)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def six_n_flops(params: Any, src_tokens: int, tgt_tokens: int) -> tuple[float, int]:
    """(6 N estimate of one training step's flops, N): encoder weights per source token, others per target token."""
    enc = dec = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] == "embedding":  # lookup tables: no matmul
            continue
        if keys[0] == "encoder":
            enc += leaf.size
        else:
            dec += leaf.size
    return 6.0 * (enc * src_tokens + dec * tgt_tokens), enc + dec
