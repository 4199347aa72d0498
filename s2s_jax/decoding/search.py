"""The one search contract: `search(step, enc, state, ...)`, greedy, sampling and beam search alike.

DESIGN.md, "Decoding: one search contract". The model is a step function
`step(enc, token [N], state) -> (log_probs [N, V], state)` (flax examples/wmt's
`tokens_to_logits` shape), so the search knows no model family, and `export/search.py`
is the same search in numpy over onnxruntime sessions or torch_ref: the two give the
same tokens and the same scores for the same step function, and `beam=1` means greedy
in both. Scores mean one thing everywhere: the sum of the chosen tokens' log-probs
(through eos) over the GNMT penalty ((5 + length) / 6) ** alpha.

- beam 1, temperature 0: the greedy argmax loop (`sampling.pick_search`); beam 1,
  temperature > 0: the same loop drawing from softmax(log_probs / temperature);
- beam > 1: beam search (`beam.beam_search`: two-pass top-k, shrinking stages, the
  shared first step once per sentence).

`model_step(model, params)` turns a Flax model of any family into the step (its
log-softmax written for XLA CPU, see `common.log_softmax`) plus the hooks its family
record declares, and `decode_source` encodes a batch and searches it: what the
Translator, `make_greedy_decoder` and the tests call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.decoding.beam import beam_search, parent_rows, stage_batches
from s2s_jax.decoding.common import NEG_INF, SearchResult, length_penalty, log_softmax, repeat_beams, take_rows
from s2s_jax.decoding.sampling import pick_search
from s2s_jax.models import check_decode_len, family

__all__ = ["NEG_INF", "SearchResult", "decode_source", "length_penalty", "log_softmax", "model_step",
           "parent_rows", "repeat_beams", "search", "stage_batches", "take_rows"]

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
ReorderFn = Callable[[Any, jax.Array], Any]


def search(
    step: StepFn,
    enc: Any,
    state: Any,
    *,
    batch: int,
    beam: int = 1,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    alpha: float = 0.0,
    row_max_len: jax.Array | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    key: jax.Array | None = None,
    reorder: ReorderFn | None = None,
    shared_encoder: bool = False,
    shrink_rows: int = 8,
    no_repeat_ngram: int = 0,
    prefix: jax.Array | None = None,
    prefix_lengths: jax.Array | None = None,
) -> SearchResult:
    """n-best hypotheses per sentence, best first: tokens [B, K, max_len], lengths [B, K], scores [B, K] (K = beam).

    Call inside `jax.jit`; every int and float argument is static (shapes and loop structure).
    step: `(enc, token [N], state) -> (log_probs [N, V], state)`, N = batch (greedy, sampling) or batch * beam.
    enc, state: pytrees of batch B (the encoder output and the initial decode state); the search repeats the
        state for the beams itself, and the encoder output too unless `shared_encoder`, when `step` gets the
        B sentences' enc with B * K rows of tokens and state (K consecutive rows a sentence).
    max_len: bound on generated tokens (the output width). row_max_len: optional [B] per-sentence bound
        (e.g. a * src_len + b), <= max_len; eos is forced on a row's last allowed step. Without it greedy may
        end a row without eos (its length is then max_len); beam search always forces eos at max_len.
    alpha: GNMT length penalty exponent of the scores (and of beam search's ranking).
    temperature, top_k, top_p, key: temperature > 0 samples (beam must be 1), among the `top_k` most likely
        tokens when top_k > 0 and within the top_p nucleus when top_p < 1 (`sampling.sampling_logits`); row b
        draws step t with `fold_in(keys[b], t)`, `key` being one key per row [B] or one key (then row b's is
        fold_in(key, b)); the score is still the model's log-prob.
    no_repeat_ngram: N > 0 blocks every token that would repeat an N-gram of the hypothesis (eos never).
    prefix, prefix_lengths: [B, P] int32 and [B]: sentence b's first prefix_lengths[b] output tokens are forced
        to prefix[b, :prefix_lengths[b]], then the search goes on (`constraints.constrain`).
    reorder: `(state, rows [N]) -> state` with row i taken from row rows[i], cheaper than `take_rows` (one
        take of whole rows per leaf, the default) for states it knows, e.g. a KV cache written up to a prefix.
    shrink_rows: beam search drops finished sentences in stages down to this many (0: never); see `beam`.
    """
    if beam < 1:
        raise ValueError(f"beam={beam} must be >= 1")
    if temperature < 0 or top_k < 0:
        raise ValueError(f"temperature={temperature} and top_k={top_k} must be >= 0")
    if temperature > 0 and beam > 1:
        raise ValueError(f"sampling (temperature={temperature}) takes one hypothesis: beam={beam} must be 1")
    if shrink_rows < 0:
        raise ValueError(f"shrink_rows={shrink_rows} must be >= 0")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
    if no_repeat_ngram < 0:
        raise ValueError(f"no_repeat_ngram={no_repeat_ngram} must be >= 0")
    if (prefix is None) != (prefix_lengths is None):
        raise ValueError("prefix and prefix_lengths go together")
    ids = dict(batch=batch, max_len=max_len, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, alpha=alpha,
               row_max_len=row_max_len, no_repeat_ngram=no_repeat_ngram, prefix=prefix, prefix_lengths=prefix_lengths)
    if beam == 1:
        return pick_search(step, enc, state, temperature=temperature, top_k=top_k, top_p=top_p, key=key, **ids)
    return beam_search(step, enc, state, beam=beam, reorder=reorder, shared_encoder=shared_encoder,
                       shrink_rows=shrink_rows, **ids)


def model_step(model: nn.Module, params: Any) -> dict[str, Any]:
    """`search`'s model arguments for a Flax model of any family: {"step", "reorder", "shared_encoder"}.

    step: decode_step then log-softmax in float32 (attention models' extra outputs dropped); reorder: the
    module's `reorder_decode_state` when its family record says `reorders_state`, else None (whole-row takes);
    shared_encoder: the record's. Read from the record at each call, so a test may swap the record."""
    variables = {"params": params}
    rec = family(model.cfg)

    def step(enc: Any, token: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        out = model.apply(variables, enc, token, state, method="decode_step")
        return log_softmax(out[0].astype(jnp.float32)), out[1]

    def reorder(state: Any, rows: jax.Array) -> Any:
        return model.apply(variables, state, rows, method="reorder_decode_state")

    return {"step": step, "reorder": reorder if rec.reorders_state else None, "shared_encoder": rec.shared_encoder}


def decode_source(model: nn.Module, params: Any, src: jax.Array, src_lengths: jax.Array, *, max_len: int,
                  bos_id: int | None = None, eos_id: int | None = None, pad_id: int | None = None,
                  **search_kwargs: Any) -> SearchResult:
    """Encode `src` [B, S] (`src_lengths` [B]) and `search` it: the initial state is
    `init_decode_state(enc, max_decode_len=max_len)`, the special ids default to `model.cfg`'s, and the other
    keyword arguments are `search`'s (beam, alpha, row_max_len, temperature, ...). Call inside `jax.jit`.

    A `max_len` beyond what the model can decode (learned position tables) is a UserError, not NaNs later."""
    cfg = model.cfg
    check_decode_len(cfg, max_len)
    variables = {"params": params}
    enc = model.apply(variables, src, src_lengths, method="encode")
    state = model.apply(variables, enc, max_decode_len=max_len, method="init_decode_state")
    ids = dict(bos_id=cfg.bos_id if bos_id is None else bos_id, eos_id=cfg.eos_id if eos_id is None else eos_id,
               pad_id=cfg.pad_id if pad_id is None else pad_id)
    return search(enc=enc, state=state, batch=src.shape[0], max_len=max_len, **model_step(model, params), **ids,
                  **search_kwargs)
