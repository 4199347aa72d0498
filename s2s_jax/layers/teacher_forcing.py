"""Decoding a training target with teacher forcing below 1 (scheduled sampling with a fixed rate), for the
families whose decoder reads one token a step (rnn, attention).

bentrevett tutorials 1-3: the first input is bos; at each later step t, with probability
`ratio` the decoder reads the gold token tgt_in[:, t], otherwise the argmax of its own logits
at t - 1 (one draw per step for the whole batch, as `random.random() < teacher_forcing_ratio`
there). The draws come from the dropout RNG inside the scan, so they are deterministic from the
train step's key and resumed exactly; they are also returned (sown as `teacher_draws`) so that
torch_ref can replay the same ones (`torch_ref.teacher_forcing`). Gradients do not flow
through the argmax (it picks an index).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def decode_with_draws(model: nn.Module, enc: Any, tgt_in: jax.Array, ratio: float, *, train: bool) -> jax.Array:
    """Logits [B, T, V] of `model.decode_step` run over the target with gold-or-own inputs; called from a family's
    `decode` (so `model` is bound). Sows the draws [T] (True: gold) into `intermediates/teacher_draws`."""
    state = model.init_decode_state(enc)
    batch, vocab = tgt_in.shape[0], model.cfg.tgt_vocab_size

    def body(module: nn.Module, carry: Any, gold: jax.Array, enc: Any) -> tuple[Any, tuple[jax.Array, jax.Array]]:
        state, prev_logits, first = carry
        use_gold = first | jax.random.bernoulli(module.make_rng("dropout"), ratio)
        own = jnp.argmax(prev_logits, axis=-1).astype(gold.dtype)
        logits, state = module.decode_step(enc, jnp.where(use_gold, gold, own), state, train=train)[:2]
        return (state, logits, jnp.zeros((), bool)), (logits, use_gold)

    scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False, "dropout": True},
                   in_axes=(1, nn.broadcast), out_axes=(1, 0))
    init = (state, jnp.zeros((batch, vocab), jnp.float32), jnp.ones((), bool))
    _, (logits, draws) = scan(model, init, tgt_in, enc)
    model.sow("intermediates", "teacher_draws", draws)
    return logits
