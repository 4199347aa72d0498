"""Batched beam search as jitted `lax.while_loop`s over a step function: the beam > 1 algorithm of `search`.

Internal to `s2s_jax.decoding`: call `search.search(step, enc, state, beam=K, ...)`, which
validates its arguments and sends beam > 1 here. The model is only a `step(enc, token,
state) -> (log_probs, state)` function, so every family (and any toy) gets the same
search; a family may reorder its own state more cheaply than a gather of every leaf
(`reorder`, e.g. the Transformer's KV-cache prefix), and may take the encoder output
of the B sentences with B * K rows of tokens and state (`shared_encoder`, K
consecutive rows a sentence), so it is not repeated K times. Each sentence keeps
`beam` live hypotheses and `beam` finished ones; all arithmetic is per row, so a
sentence's result does not depend on which other sentences share its batch, which is
also what lets the search drop finished sentences as it goes (`shrink_rows`).

Scores are log-probabilities divided by the GNMT length penalty
`((5 + length) / 6) ** alpha`, `length` counting generated tokens including eos.
With alpha = 0 and beam = 1 this algorithm is exactly greedy decoding (tokens and
scores; `search` runs the cheaper greedy loop for beam 1). The loop stops early once
no live hypothesis of any row can still beat that row's worst finished one (log-probs
only fall as sequences grow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.decoding.common import NEG_INF, SearchResult, length_penalty, repeat_beams, take_rows
from s2s_jax.decoding.constraints import constrain
from s2s_jax.decoding.topk import top_k

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
ReorderFn = Callable[[Any, jax.Array], Any]


def parent_rows(parents: jax.Array, beam: int) -> jax.Array:
    """Beams `parents` [B, K'] within each sentence -> their rows [B * K'] in a [B * beam, ...] state."""
    return (jnp.arange(parents.shape[0])[:, None] * beam + parents).reshape(-1)


class _Carry(NamedTuple):
    step: jax.Array
    limit: jax.Array  # [B] per-row bound on generated tokens
    enc: Any  # encoder output, batch B * K (B when shared by a sentence's beams)
    live_tokens: jax.Array  # [B, K, L + 1], position 0 is bos
    live_logp: jax.Array  # [B, K]
    state: Any  # decode state, batch B * K
    done_tokens: jax.Array  # [B, K, L + 1]
    done_scores: jax.Array  # [B, K]
    done_lengths: jax.Array  # [B, K]
    live_steps: jax.Array  # [B, K, L] each token's log-prob
    done_steps: jax.Array  # [B, K, L]
    prefix: jax.Array  # [B, P] forced first tokens (P = 1 and lengths 0 without a prefix)
    prefix_lengths: jax.Array  # [B]


def stage_batches(batch: int, shrink_rows: int) -> list[int]:
    """The batch of each stage of the search: `batch`, then halved (rounded up) while that stays >= shrink_rows."""
    sizes = [batch]
    while shrink_rows and (sizes[-1] + 1) // 2 >= shrink_rows and sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _compact(c: _Carry, keep: jax.Array, beam: int, shared_encoder: bool) -> _Carry:
    """The carry with only sentences `keep` [B'] (their rows, in that order); the state (and the encoder output
    unless it is shared by a sentence's beams) by whole beam rows, as every decode state is batch-first."""
    rows = (keep[:, None] * beam + jnp.arange(beam)).reshape(-1)
    by_sentence = {name: jnp.take(getattr(c, name), keep, axis=0) for name in _Carry._fields
                   if name not in ("step", "enc", "state")}
    enc = jax.tree.map(lambda x: jnp.take(x, keep if shared_encoder else rows, axis=0), c.enc)
    state = jax.tree.map(lambda x: jnp.take(x, rows, axis=0), c.state)
    return _Carry(step=c.step, enc=enc, state=state, **by_sentence)


def beam_search(
    step: StepFn,
    enc: Any,
    state: Any,
    *,
    batch: int,
    beam: int,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    alpha: float = 0.0,
    row_max_len: jax.Array | None = None,
    reorder: ReorderFn | None = None,
    shared_encoder: bool = False,
    shrink_rows: int = 8,
    no_repeat_ngram: int = 0,
    prefix: jax.Array | None = None,
    prefix_lengths: jax.Array | None = None,
) -> SearchResult:
    """Beam search from encoder output `enc` and initial decode state `state` (both batch B). Call inside `jax.jit`.

    See `search.search` for the arguments. shrink_rows: the search drops finished sentences
    from its batch, as fairseq does: once no more than half of the rows can still improve,
    those rows move to a loop over half the batch (then a quarter, ...), down to
    `shrink_rows` sentences; 0 keeps the whole batch to the end. Each stage is one more
    compiled loop; results are identical, since a finished row never changes.
    """
    reorder = take_rows if reorder is None else reorder
    init = state  # once per sentence (every family's is row-wise), repeated for the K beams below
    limit = jnp.full((batch,), max_len, jnp.int32) if row_max_len is None else jnp.minimum(row_max_len, max_len)

    tokens = jnp.zeros((batch, beam, max_len + 1), jnp.int32).at[:, :, 0].set(bos_id)
    # Only beam 0 is live at the start, so the first step does not pick K copies of one token.
    live_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (beam - 1)), (batch, 1))
    carry = _Carry(
        step=jnp.array(0, jnp.int32),
        limit=limit.astype(jnp.int32),
        enc=enc if shared_encoder else repeat_beams(enc, beam),
        live_tokens=tokens,
        live_logp=live_logp,
        state=repeat_beams(init, beam),
        done_tokens=tokens,
        done_scores=jnp.full((batch, beam), NEG_INF),
        done_lengths=jnp.zeros((batch, beam), jnp.int32),
        live_steps=jnp.zeros((batch, beam, max_len), jnp.float32),
        done_steps=jnp.zeros((batch, beam, max_len), jnp.float32),
        prefix=jnp.zeros((batch, 1), jnp.int32) if prefix is None else prefix.astype(jnp.int32),
        prefix_lengths=jnp.zeros((batch,), jnp.int32) if prefix is None else prefix_lengths.astype(jnp.int32),
    )

    def can_improve(c: _Carry) -> jax.Array:
        """[B]: rows whose best live hypothesis can still beat their worst finished one. Its log-prob only
        falls, so the bound is at the most favourable length penalty (alpha >= 0: the longest allowed)."""
        best_len = jnp.where(alpha >= 0, c.limit, c.step + 1).astype(jnp.float32)
        best_live = c.live_logp[:, 0] / length_penalty(best_len, alpha)
        worst_done = c.done_scores[:, -1]
        return (best_live > worst_done) & (c.step < c.limit)

    def body(c: _Carry) -> _Carry:
        token = c.live_tokens[:, :, c.step].reshape(-1)
        return advance(c, *step(c.enc, token, c.state))

    def first(c: _Carry) -> _Carry:
        """Step 0. Every beam of a sentence holds bos and the same initial state, and only beam 0 is live, so
        the model runs once per sentence and its log-probs and next state stand for all K beams (the beam
        search of the K copies gives the same candidates): 1/K of that step's work."""
        logp, state = step(enc, jnp.full((batch,), bos_id, jnp.int32), init)
        return advance(c, repeat_beams(logp, beam), repeat_beams(state, beam))

    def advance(c: _Carry, logp: jax.Array, state: Any) -> _Carry:
        """The search's update from one step's log-probs [rows * K, V] and the model's next state."""
        rows = c.limit.shape[0]
        logp = logp.astype(jnp.float32).reshape(rows, beam, -1)
        vocab = logp.shape[-1]
        # On a row's last allowed step only eos may be chosen; n-grams and the prefix (constraints.py).
        last = jnp.repeat(c.step + 1 >= c.limit, beam)
        logp = constrain(logp.reshape(rows * beam, vocab), c.step, eos_id=eos_id, last=last,
                         generated=c.live_tokens[:, :, 1:].reshape(rows * beam, -1), no_repeat_ngram=no_repeat_ngram,
                         prefix=None if prefix is None else jnp.repeat(c.prefix, beam, axis=0),
                         prefix_lengths=jnp.repeat(c.prefix_lengths, beam)).reshape(rows, beam, vocab)
        cand = (c.live_logp[:, :, None] + logp).reshape(rows, beam * vocab)

        # 2K candidates always hold K that do not end in eos.
        top_logp, top_idx = top_k(cand, 2 * beam)
        src_beam, tok = top_idx // vocab, top_idx % vocab
        new_tokens = jnp.take_along_axis(c.live_tokens, src_beam[:, :, None], axis=1)
        new_tokens = new_tokens.at[:, :, c.step + 1].set(tok)
        new_steps = jnp.take_along_axis(c.live_steps, src_beam[:, :, None], axis=1)
        new_steps = new_steps.at[:, :, c.step].set(top_logp - jnp.take_along_axis(c.live_logp, src_beam, axis=1))
        is_eos = tok == eos_id
        alive = c.step < c.limit  # rows past their limit take no new hypotheses

        # Live: the best K candidates that do not end in eos.
        live_rank = jnp.where(is_eos, NEG_INF, top_logp)
        live_logp, pick = jax.lax.top_k(live_rank, beam)
        live_tokens = jnp.take_along_axis(new_tokens, pick[:, :, None], axis=1)
        state = reorder(state, parent_rows(jnp.take_along_axis(src_beam, pick, axis=1), beam))

        # Finished: candidates ending in eos among the top K (as fairseq does, which makes beam 1
        # exactly greedy), merged into the K best so far.
        length = (c.step + 1).astype(jnp.float32)
        in_top = (jnp.arange(2 * beam) < beam)[None, :]
        finish = is_eos & in_top & alive[:, None]
        eos_scores = jnp.where(finish, top_logp / length_penalty(length, alpha), NEG_INF)
        all_scores = jnp.concatenate([c.done_scores, eos_scores], axis=1)
        all_tokens = jnp.concatenate([c.done_tokens, new_tokens], axis=1)
        all_lengths = jnp.concatenate([c.done_lengths, jnp.full_like(eos_scores, c.step + 1, jnp.int32)], axis=1)
        all_steps = jnp.concatenate([c.done_steps, new_steps], axis=1)
        done_scores, keep = jax.lax.top_k(all_scores, beam)
        return c._replace(
            step=c.step + 1,
            live_tokens=live_tokens,
            live_logp=live_logp,
            state=state,
            done_tokens=jnp.take_along_axis(all_tokens, keep[:, :, None], axis=1),
            done_scores=done_scores,
            done_lengths=jnp.take_along_axis(all_lengths, keep, axis=1),
            live_steps=jnp.take_along_axis(new_steps, pick[:, :, None], axis=1),
            done_steps=jnp.take_along_axis(all_steps, keep[:, :, None], axis=1),
        )

    # A row that cannot improve never changes again (its candidates cannot outscore its worst finished
    # hypothesis), so each stage ends once few enough rows are left to fit the next, smaller one.
    sizes = stage_batches(batch, shrink_rows)
    carry = jax.lax.cond(jnp.any(can_improve(carry)), first, lambda c: c, carry)  # the loops' test at step 0
    done = (carry.done_tokens, carry.done_scores, carry.done_lengths, carry.done_steps)
    sentences = jnp.arange(batch)
    for after in sizes[1:] + [0]:

        def cond(c: _Carry, after: int = after) -> jax.Array:
            active = can_improve(c)
            return (c.step < max_len) & jnp.any(active) & (jnp.sum(active) > after)

        carry = jax.lax.while_loop(cond, body, carry)
        part = (carry.done_tokens, carry.done_scores, carry.done_lengths, carry.done_steps)
        done = tuple(full.at[sentences].set(p) for full, p in zip(done, part, strict=True))
        if after:
            # The rows that can still improve first (stable, so in batch order), cut to the next size.
            keep = jnp.argsort(~can_improve(carry), stable=True)[:after]
            sentences = sentences[keep]
            carry = _compact(carry, keep, beam, shared_encoder)

    done_tokens, done_scores, done_lengths, done_steps = done
    tokens = done_tokens[:, :, 1:]
    positions = jnp.arange(max_len)[None, None, :]
    inside = positions < done_lengths[:, :, None]
    return SearchResult(tokens=jnp.where(inside, tokens, pad_id), lengths=done_lengths, scores=done_scores,
                        token_scores=jnp.where(inside, done_steps, 0.0))
