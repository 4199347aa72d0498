"""What may be chosen at a step: no-repeat n-gram blocking, a forced target prefix, eos on a row's last step.

Every search (greedy, sampling, beam) applies `constrain` to a step's log-probs before it
picks, so the three features mean one thing everywhere, and `export/search.py` applies
the same rules in numpy, in the same order, with the same arithmetic (a disallowed token's
log-prob becomes NEG_INF, then the search adds the hypothesis' running score), so the two
give identical tokens and scores.

- **n-gram blocking** (fairseq's `--no-repeat-ngram-size`, CTranslate2's
  `no_repeat_ngram_size`): a token that would complete an n-gram already present among the
  row's generated tokens (bos not included) is disallowed. eos is never blocked, so a row
  can always end.
- **prefix** (CTranslate2's `target_prefix`, fairseq's `prefix_size`): while step t is
  below a row's prefix length, only the prefix's token t is allowed; the search then goes
  on freely. The forced tokens count in the score with the model's log-probs.
- **last step**: on a row's last allowed step only eos is allowed; this wins over the
  prefix (the caller gives rows room for their prefix and eos, as `run/translate.py` does).

All per row, so a sentence's output never depends on its batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from s2s_jax.decoding.common import NEG_INF


def ngram_blocked(generated: jax.Array, t: jax.Array, n: int, vocab: int) -> jax.Array:
    """[N, V] bool: the tokens that would repeat an n-gram of `generated` [N, L] (its first t tokens are the
    row's output so far) if chosen as token t. Static shapes: every window is compared, those not yet complete
    are masked out, so one compiled step serves every t."""
    rows, width = generated.shape
    starts = width - n + 1  # windows generated[j : j + n]
    if starts <= 0:
        return jnp.zeros((rows, vocab), bool)
    context = jax.lax.dynamic_slice_in_dim(generated, jnp.maximum(t - n + 1, 0), n - 1, axis=1)  # [N, n - 1]
    match = jnp.arange(starts)[None, :] <= t - n  # window j is wholly before token t - n + 1
    for i in range(n - 1):
        match &= generated[:, i:i + starts] == context[:, i:i + 1]
    follows = generated[:, n - 1:]  # the token that completed window j
    return jnp.zeros((rows, vocab), bool).at[jnp.arange(rows)[:, None], follows].max(match)


def constrain(logp: jax.Array, t: jax.Array, *, eos_id: int, last: jax.Array | None = None,
              generated: jax.Array | None = None, no_repeat_ngram: int = 0, prefix: jax.Array | None = None,
              prefix_lengths: jax.Array | None = None) -> jax.Array:
    """logp [N, V] with disallowed tokens at NEG_INF: n-grams that `generated` [N, L] holds already
    (`no_repeat_ngram` > 0), every token but prefix[:, t] while t < prefix_lengths, and every token but eos
    where `last` [N]. prefix [N, P] int32 (any P >= 1), prefix_lengths [N] <= P."""
    vocab = logp.shape[-1]
    ids = jnp.arange(vocab)
    banned = jnp.zeros(logp.shape, bool)
    if no_repeat_ngram > 0 and generated is not None:
        banned |= ngram_blocked(generated, t, no_repeat_ngram, vocab) & (ids != eos_id)
    if prefix is not None:
        forced = jnp.take(prefix, jnp.minimum(t, prefix.shape[1] - 1), axis=1)  # [N]
        in_prefix = t < prefix_lengths
        if last is not None:
            in_prefix &= ~last
        banned |= in_prefix[:, None] & (ids[None, :] != forced[:, None])
    if last is not None:
        banned = jnp.where(last[:, None], ids[None, :] != eos_id, banned)
    return jnp.where(banned, NEG_INF, logp)
