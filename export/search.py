"""`search(step, enc, state, ...)` in numpy: the search contract of `s2s_jax.decoding.search`, for onnxruntime.

DESIGN.md, "Decoding: one search contract". The model is a `step(enc, token, state) ->
(log_probs [N, V], state)` callable over lists of batch-first numpy arrays, so the same
search drives onnxruntime sessions (export.runtime), the torch_ref mirror
(`export.graphs.numpy_stepper`: tests, bench) or anything else. Imports numpy only.

Same semantics as the JAX `search` (its options beyond beam and length gathered in `Rules`;
sampling draws with numpy's generators, so from the same distribution, not the same draws),
and, for the same step function, the same tokens and the same scores: the arithmetic
is float32 throughout and `top_k` breaks ties by lower index (as `jax.lax.top_k` and
`jnp.argmax` do).
- beam 1 is greedy (`s2s_jax/decoding/sampling.py` at temperature 0): argmax, pad
  after eos, stop when every row has emitted eos or after max_len tokens; with
  per-row bounds, eos forced on a row's last allowed step;
- beam > 1 (`s2s_jax/decoding/beam.py`): K live and K finished hypotheses per row;
  the first step runs once per sentence; the top 2K candidates always hold K that do
  not end in eos; eos candidates are finalized only if among the top K; eos is forced
  on a row's last allowed step; the loop stops once no live hypothesis can beat its
  row's worst finished one; n-best results, best first.
Scores, for both: the sum of the chosen tokens' log-probs (through eos) over the GNMT
penalty ((5 + length) / 6) ** alpha.

The loop itself (`search_top`) reads only each row's best candidates from a `TopStepFn`
`(enc, token, state, live, last, k) -> (values [N, k], ids [N, k], state)`: the k largest of
live + log-probs (eos forced where `last`), ties to the lower id. onnxruntime computes
them in the step graph (export/step_heads.py), so neither the [N, V] log-probs nor the
state leave it; `search` wraps a log-prob step into one (`top_of`). This is exact, not an
approximation: the top 2K of a sentence's K x V candidates (ties to the lower flat index
beam * V + id) hold at most 2K of any one row, and within a row that order is the row's
own (value, then id), so they are all among the rows' top 2K, and merging those by
(value, flat index) picks the same 2K in the same order. The state and the encoder
tensors are opaque to the loop: it only hands them to `reorder` and `take`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from export.search_rules import NEG_INF, constrain, draw, row_generators, sampling_logits

# Finished sentences leave the batch once they are this share of it: each departure gathers the encoder tensors
# (and, for greedy, the state) once, so a departure per finished sentence would cost more than it saves.
SHRINK = 0.25
Arrays = list[np.ndarray]
StepFn = Callable[[Arrays, np.ndarray, Arrays], tuple[np.ndarray, Arrays]]
# (enc, token [N], state, live [N] float32, last [N] bool, k or None) -> (values [N, k], ids [N, k], state);
# k None: the candidates of every id, [N, V] in id order, and ids None
TopStepFn = Callable[..., tuple[np.ndarray, np.ndarray | None, Any]]
ReorderFn = Callable[[Any, np.ndarray], Any]


class SearchResult(NamedTuple):
    """tokens [B, K, L] (pad after eos), lengths [B, K] (up to and including eos, or L without one), scores [B, K]
    (length-penalised log-probs); best first, K = beam. token_scores [B, K, L]: each token's log-prob (0 after
    the end), as s2s_jax's SearchResult has them."""

    tokens: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    token_scores: np.ndarray


class Rules(NamedTuple):
    """The search's options beyond beam and length (s2s_jax's `search` keywords of the same names): n-gram
    blocking, a forced prefix ([B, P] and [B]), sampling (temperature > 0, top_k, top_p; row b drawn from a
    generator seeded with seeds[b]). With none of them the loop reads only the step's top candidates; with any,
    the whole log-probs (`export/search_rules.py` applies them)."""

    no_repeat_ngram: int = 0
    prefix: np.ndarray | None = None
    prefix_lengths: np.ndarray | None = None
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seeds: Sequence[Any] | None = None  # per sentence: an int or a sequence of ints

    @property
    def full(self) -> bool:
        """Whether the search needs every token's log-prob (not the step's top candidates)."""
        return bool(self.no_repeat_ngram or self.prefix is not None or self.temperature > 0)

    def check(self, beam: int, batch: int) -> None:
        if self.temperature < 0 or self.top_k < 0 or self.no_repeat_ngram < 0:
            raise ValueError(f"temperature={self.temperature}, top_k={self.top_k} and no_repeat_ngram="
                             f"{self.no_repeat_ngram} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.temperature > 0 and beam > 1:
            raise ValueError(f"sampling (temperature={self.temperature}) takes one hypothesis: beam={beam} must be 1")
        if (self.prefix is None) != (self.prefix_lengths is None):
            raise ValueError("prefix and prefix_lengths go together")
        if self.temperature > 0 and (self.seeds is None or len(self.seeds) != batch):
            raise ValueError(f"sampling needs one seed per sentence ({batch})")

    def rows(self, picked: np.ndarray, beam: int = 1) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(prefix, prefix_lengths) of sentences `picked`, each repeated for its `beam` rows."""
        if self.prefix is None:
            return None, None
        return np.repeat(self.prefix[picked], beam, axis=0), np.repeat(self.prefix_lengths[picked], beam)


NO_RULES = Rules()


def length_penalty(length: np.ndarray, alpha: float) -> np.ndarray:
    return ((np.float32(5.0) + np.asarray(length, np.float32)) / np.float32(6.0)) ** np.float32(alpha)


def top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest k along the last axis, ties to the lower index (jax.lax.top_k's order).

    A full sort of beam x vocab scores per step dominated beam search (193 ms vs 28 ms at
    batch 64, beam 5, vocab 5921), so the k largest are found by `argpartition` and only they
    are sorted. Where values tie across the cut (e.g. rows of -inf), which k is not decided by
    the partition: those rows take the stable full sort.
    """
    n = x.shape[-1]
    if k >= n:
        idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(x, idx, axis=-1), idx
    flat = x.reshape(-1, n)
    part = np.argpartition(-flat, k - 1, axis=-1)[:, :k]
    vals = along(flat, part)
    idx = along(part, np.lexsort((part, -vals), axis=-1))
    ties = (flat >= vals.min(axis=-1, keepdims=True)).sum(axis=-1) > k
    if ties.any():
        idx[ties] = np.argsort(-flat[ties], axis=-1, kind="stable")[:, :k]
    shape = x.shape[:-1] + (k,)
    return along(flat, idx).reshape(shape), idx.reshape(shape)


def along(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[b, idx[b, j], ...] for a [B, N, ...] and idx [B, k]: `np.take_along_axis` on axis 1 (with idx broadcast
    over a's further axes) as one fancy index. take_along_axis builds its index arrays in Python, and its 17 calls
    a beam step were a tenth of a batch-1 beam search's time outside onnxruntime."""
    return a[np.arange(len(idx))[:, None], idx]


def repeat_beams(arrays: Sequence[np.ndarray], beam: int) -> Arrays:
    """[B, ...] -> [B * beam, ...], each row repeated `beam` times."""
    return [np.repeat(a, beam, axis=0) for a in arrays]


def take_rows(arrays: Sequence[np.ndarray], rows: np.ndarray) -> Arrays:
    """The default state reorder: row i of every array taken from row rows[i] (a state may have a 0-size axis)."""
    return [np.take(a, rows, axis=0) for a in arrays]


def parent_rows(parents: np.ndarray, beam: int) -> np.ndarray:
    """Beams `parents` [B, K'] within each sentence -> their rows [B * K'] in a [B * beam, ...] state."""
    return (np.arange(parents.shape[0])[:, None] * beam + parents).reshape(-1)


def candidates(log_probs: np.ndarray, live: np.ndarray, last: np.ndarray, eos_id: int) -> np.ndarray:
    """[N, V] live + log-probs, every id but eos at NEG_INF on rows at their `last` step (float32, as the graph)."""
    logp = log_probs.astype(np.float32, copy=False)
    logp = np.where(last[:, None] & (np.arange(logp.shape[-1]) != eos_id), NEG_INF, logp)
    return live.astype(np.float32)[:, None] + logp


def top_of(step: StepFn, eos_id: int) -> TopStepFn:
    """A `TopStepFn` over a log-prob step: `candidates` and their per-row `top_k` in numpy."""

    def top_step(enc: Arrays, token: np.ndarray, state: Arrays, live: np.ndarray, last: np.ndarray,
                 k: int | None) -> tuple[np.ndarray, np.ndarray | None, Arrays]:
        logp, state = step(enc, token, state)
        cand = candidates(logp, live, last, eos_id)
        if k is None:
            return cand, None, state
        values, ids = top_k(cand, k)
        return values, ids, state

    return top_step


def search(step: StepFn, enc: Arrays, state: Arrays, *, batch: int, beam: int = 1, max_len: int, bos_id: int,
           eos_id: int, pad_id: int, alpha: float = 0.0, row_max_len: np.ndarray | None = None,
           reorder: ReorderFn | None = None, rules: Rules = NO_RULES) -> SearchResult:
    """n-best hypotheses per sentence, best first: tokens [B, K, max_len], lengths [B, K], scores [B, K] (K = beam).

    enc, state: the encoder tensors and initial decode state, batch B (repeated to B * beam here).
    row_max_len [B]: each row's bound, <= max_len (eos forced on its last allowed step); without it greedy may
    end a row without eos (length max_len), beam search forces eos at max_len. reorder: `(state, rows) ->
    state`, row i from row rows[i] (default `take_rows`). rules: n-gram blocking, prefix, sampling (`Rules`).
    """
    return search_top(top_of(step, eos_id), enc, state, batch=batch, beam=beam, max_len=max_len, bos_id=bos_id,
                      eos_id=eos_id, pad_id=pad_id, alpha=alpha, row_max_len=row_max_len, reorder=reorder,
                      rules=rules)


def search_top(top_step: TopStepFn, enc: Any, state: Any, *, batch: int, beam: int = 1, max_len: int, bos_id: int,
               eos_id: int, pad_id: int, alpha: float = 0.0, row_max_len: np.ndarray | None = None,
               reorder: ReorderFn | None = None, take: ReorderFn | None = None,
               rules: Rules = NO_RULES, shared_encoder: bool = False) -> SearchResult:
    """`search` over a `TopStepFn`; enc and state are opaque (the runtime's OrtValues) and reach the loop only
    through `reorder(state, rows)` and `take(enc, rows)` (default `take_rows` both): row i from row rows[i]. Beams
    are made by taking each sentence's rows `beam` times; finished sentences leave the batch (`SHRINK`). The loop
    never uses a state or encoder value again once it has stepped, reordered or taken it, so those may consume
    or overwrite it (the runtime's in-place cache, export/cache.py). shared_encoder: `top_step` reads the encoder
    tensors of B sentences with B * K rows of tokens and state (K consecutive rows a sentence), so beam search
    takes the encoder rows once per sentence, not once per beam (the family record's `shared_encoder`)."""
    if beam < 1:
        raise ValueError(f"beam={beam} must be >= 1")
    rules.check(beam, batch)
    limit = np.full(batch, max_len, np.int32) if row_max_len is None else np.minimum(row_max_len, max_len)
    reorder, take = reorder or take_rows, take or take_rows
    if beam == 1:
        return _greedy(top_step, enc, state, batch=batch, max_len=max_len, bos_id=bos_id, pad_id=pad_id,
                       eos_id=eos_id, alpha=alpha, limit=None if row_max_len is None else limit, reorder=reorder,
                       take=take, rules=rules)
    return _beam(top_step, enc, state, batch=batch, beam=beam, max_len=max_len, bos_id=bos_id, eos_id=eos_id,
                 pad_id=pad_id, alpha=alpha, limit=limit, reorder=reorder, take=take, rules=rules,
                 shared_encoder=shared_encoder)


def _shrink(finished: np.ndarray) -> bool:
    """Drop finished sentences from the batch once they are SHRINK of it (each drop gathers the encoder tensors,
    and for greedy the state, once)."""
    return bool(finished.all() or finished.mean() >= SHRINK)


def log_probs(top_step: TopStepFn, enc: Any, token: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
    """A step's whole [N, V] log-probs through a TopStepFn: its candidates at live 0 with nothing forced, which
    are the log-probs exactly (0 + x is x)."""
    n = len(token)
    logp, _, state = top_step(enc, token, state, np.zeros(n, np.float32), np.zeros(n, bool), None)
    return logp, state


def _greedy(top_step: TopStepFn, enc: Any, state: Any, *, batch: int, max_len: int, bos_id: int, eos_id: int,
            pad_id: int, alpha: float, limit: np.ndarray | None, reorder: ReorderFn, take: ReorderFn,
            rules: Rules) -> SearchResult:
    tokens = np.full((batch, max_len), pad_id, np.int32)
    logp_sum = np.zeros(batch, np.float32)
    token_scores = np.zeros((batch, max_len), np.float32)
    act = np.arange(batch)  # the sentences still in the batch, in row order
    token = np.full(batch, bos_id, np.int64)
    done = np.zeros(batch, bool)  # of the rows in the batch
    generators = row_generators(rules.seeds) if rules.temperature > 0 else None
    t = 0
    while t < max_len and not done.all():
        last = np.zeros(len(act), bool) if limit is None else t + 1 >= limit[act]
        if rules.full:  # the whole log-probs, constrained (and drawn from) as s2s_jax's pick_search does
            logp, state = log_probs(top_step, enc, token, state)
            prefix, prefix_lengths = rules.rows(act)
            logp = constrain(logp, t, eos_id=eos_id, last=None if limit is None else last, generated=tokens[act],
                             no_repeat_ngram=rules.no_repeat_ngram, prefix=prefix, prefix_lengths=prefix_lengths)
            if generators is None:
                ids = logp.argmax(axis=-1)
            else:
                ids = draw(sampling_logits(logp, rules.temperature, rules.top_k, rules.top_p),
                           [generators[i] for i in act])
            values = np.take_along_axis(logp, ids[:, None], axis=1)
        else:
            live = np.zeros(len(act), np.float32)  # 0 + log-prob is the log-prob: the top-1 is the argmax
            values, ids, state = top_step(enc, token, state, live, last, 1)
            ids = ids[:, 0]
        chosen = np.where(done, np.float32(0.0), values[:, 0])
        logp_sum[act] += chosen  # beam search's order of sums
        token_scores[act, t] = chosen
        nxt = np.where(done, pad_id, ids)
        tokens[act, t] = nxt
        done |= nxt == eos_id
        token = nxt.astype(np.int64)
        t += 1
        if t < max_len and _shrink(done) and not done.all():
            keep = np.flatnonzero(~done)
            act, token, done = act[keep], token[keep], done[keep]
            state, enc = reorder(state, keep), take(enc, keep)
    is_eos = tokens == eos_id
    lengths = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1) + 1, max_len).astype(np.int32)
    scores = (logp_sum / length_penalty(lengths, alpha)).astype(np.float32)
    return SearchResult(tokens[:, None], lengths[:, None], scores[:, None], token_scores[:, None])


def _merge(values: np.ndarray, ids: np.ndarray, vocab: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows' top candidates [B, K, k'] -> each sentence's k best (values, flat indices beam * V + id) [B, k],
    ordered by value, then the lower flat index: what `top_k` over the sentence's K x V candidates gives."""
    b, beams, width = values.shape
    flat = (np.arange(beams)[None, :, None] * vocab + ids).reshape(b, beams * width)
    values = values.reshape(b, beams * width)
    order = np.lexsort((flat, -values), axis=-1)[:, :k]
    return along(values, order), along(flat, order)


def _beam(top_step: TopStepFn, enc: Any, state: Any, *, batch: int, beam: int, max_len: int, bos_id: int,
          eos_id: int, pad_id: int, alpha: float, limit: np.ndarray, reorder: ReorderFn,
          take: ReorderFn, rules: Rules, shared_encoder: bool = False) -> SearchResult:
    """Per sentence [B, ...] arrays hold every sentence (the result); `act` are those still in the batch, whose
    rows (K a sentence, in `act` order) the state and `enc_k` hold."""
    tokens = np.zeros((batch, beam, max_len + 1), np.int32)
    tokens[:, :, 0] = bos_id
    live_tokens, done_tokens = tokens, tokens.copy()
    live_logp = np.tile(np.array([0.0] + [NEG_INF] * (beam - 1), np.float32), (batch, 1))
    done_scores = np.full((batch, beam), NEG_INF, np.float32)
    done_lengths = np.zeros((batch, beam), np.int32)
    live_steps, done_steps = np.zeros((batch, beam, max_len), np.float32), np.zeros((batch, beam, max_len), np.float32)
    best_len = limit if alpha >= 0 else None
    act, enc_k, vocab = np.arange(batch), None, 0

    def can_improve(t: int, rows: np.ndarray) -> np.ndarray:
        length = best_len[rows] if best_len is not None else np.full(len(rows), t + 1)
        best_live = live_logp[rows, 0] / length_penalty(length, alpha)
        return (best_live > done_scores[rows, -1]) & (t < limit[rows])

    t = 0
    while t < max_len and len(act):
        last = t + 1 >= limit[act]
        if t == 0:  # every beam holds bos and the initial state: run the step once per sentence, as JAX does
            logp, state = log_probs(top_step, enc, np.full(batch, bos_id, np.int64), state)
            prefix, prefix_lengths = rules.rows(act)
            logp = constrain(logp, t, eos_id=eos_id, last=last, prefix=prefix, prefix_lengths=prefix_lengths)
            vocab = logp.shape[-1]
            cand = (live_logp[:, :, None] + logp[:, None, :]).reshape(batch, beam * vocab)
            top_logp, top_idx = top_k(cand, 2 * beam)
        elif rules.full:  # every row's whole log-probs, constrained as s2s_jax's beam search does
            n = len(act)
            logp, state = log_probs(top_step, enc_k, live_tokens[act, :, t].reshape(-1).astype(np.int64), state)
            prefix, prefix_lengths = rules.rows(act, beam)
            logp = constrain(logp, t, eos_id=eos_id, last=np.repeat(last, beam),
                             generated=live_tokens[act, :, 1:].reshape(n * beam, -1),
                             no_repeat_ngram=rules.no_repeat_ngram, prefix=prefix, prefix_lengths=prefix_lengths)
            cand = (live_logp[act][:, :, None] + logp.reshape(n, beam, vocab)).reshape(n, beam * vocab)
            top_logp, top_idx = top_k(cand, 2 * beam)
        else:  # the rows' own top 2K (or all V), merged per sentence: exact, see the module docstring
            values, ids, state = top_step(enc_k, live_tokens[act, :, t].reshape(-1).astype(np.int64), state,
                                          live_logp[act].reshape(-1), np.repeat(last, beam), min(2 * beam, vocab))
            n = len(act)
            top_logp, top_idx = _merge(values.reshape(n, beam, -1), ids.reshape(n, beam, -1), vocab, 2 * beam)
        src_beam, tok = top_idx // vocab, top_idx % vocab
        new_tokens = along(live_tokens[act], src_beam)
        new_tokens[:, :, t + 1] = tok
        new_steps = along(live_steps[act], src_beam)
        new_steps[:, :, t] = top_logp - along(live_logp[act], src_beam)
        is_eos = tok == eos_id
        alive = t < limit[act]

        pick_logp, pick = top_k(np.where(is_eos, NEG_INF, top_logp), beam)
        live_logp[act] = pick_logp
        live_tokens[act] = along(new_tokens, pick)
        live_steps[act] = along(new_steps, pick)
        rows = parent_rows(along(src_beam, pick), beam)
        if t == 0:
            rows = rows // beam  # the state has one row a sentence

        finish = is_eos & (np.arange(2 * beam) < beam)[None, :] & alive[:, None]
        eos_scores = np.where(finish, top_logp / length_penalty(np.float32(t + 1), alpha), NEG_INF)
        all_scores = np.concatenate([done_scores[act], eos_scores], axis=1)
        all_tokens = np.concatenate([done_tokens[act], new_tokens], axis=1)
        all_lengths = np.concatenate([done_lengths[act], np.full(eos_scores.shape, t + 1, np.int32)], axis=1)
        done_scores[act], keep = top_k(all_scores, beam)
        done_tokens[act] = along(all_tokens, keep)
        done_lengths[act] = along(all_lengths, keep)
        all_steps = np.concatenate([done_steps[act], new_steps], axis=1)
        done_steps[act] = along(all_steps, keep)
        t += 1

        # A sentence that cannot improve any more is final (`can_improve`, as JAX's loop condition). Dropping it
        # when enough are: the per-step reorder takes only the rows kept; the encoder rows are taken anew.
        improve = can_improve(t, act) if t < max_len else np.zeros(len(act), bool)
        sentences = np.arange(len(act))
        if t == 1 or _shrink(~improve):
            if _shrink(~improve):
                sentences = np.flatnonzero(improve)
            act = act[sentences]
            beam_rows = (sentences[:, None] * beam + np.arange(beam)).reshape(-1)
            rows = rows.reshape(-1, beam)[sentences].reshape(-1)
            if shared_encoder:
                enc_k = take(enc if t == 1 else enc_k, act if t == 1 else sentences)
            else:
                enc_k = take(enc, np.repeat(act, beam)) if t == 1 else take(enc_k, beam_rows)
        if len(act):
            state = reorder(state, rows)

    inside = np.arange(max_len)[None, None, :] < done_lengths[:, :, None]
    out = np.where(inside, done_tokens[:, :, 1:], pad_id).astype(np.int32)
    return SearchResult(tokens=out, lengths=done_lengths, scores=done_scores,
                        token_scores=np.where(inside, done_steps, np.float32(0.0)))
