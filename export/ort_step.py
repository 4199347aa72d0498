"""The decoder step with its state kept in onnxruntime: OrtValues fed back through IOBinding.

Why: the runtime used to pass every state tensor (for a Transformer, a max_len KV cache per layer) from
onnxruntime to numpy and back at each step, gather it in numpy for the beam reorder, and take the whole
[rows, V] log-probs out to find the best candidates; at batch 64, beam 5 that made ORT beam search 17x slower
than JAX (README, "Decoding speed", 2026-11-22). Here the encoder's outputs and the state stay OrtValues
that onnxruntime allocated; the step's inputs are bound to them and its outputs are bound to new
onnxruntime buffers, so between steps only tokens, beam scores and the search head's top candidates
([rows, k], export/step_heads.py) cross into numpy. Beams are repeated and reordered by `state_reorder.onnx`
(one Gather per state tensor), also on onnxruntime's buffers. A cache state (model.json's `cache`, the
Transformers' KV caches) is the exception: numpy buffers (export/cache.py) that the step reads in place
(OrtValues over their memory) and into which the new position's rows are written, by the step itself where
its present outputs are bound to them (export version 4); they are reordered in numpy.

`OrtStepper` provides the three callables `export.search.search_top` takes: `top_step`, `reorder`, `take`.
Imports numpy and onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from export.cache import Cache
from export.search import NEG_INF, candidates

Values = list[ort.OrtValue]
OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# onnxruntime's SkipLayerNormalization fusion made the steps of the Multi30k Transformer 3-10% slower than the
# Add + LayerNormalization it replaces (batch 64, greedy and beam 5, fp32 and int8, one thread, A/B in one run).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32, "tensor(bool)": np.bool_}


def session_options(threads: int | None = None, optimization: str = "all") -> ort.SessionOptions:
    """Options for the runtime's sessions: `threads` intra-op threads (None: onnxruntime's default, one per
    core), one inter-op thread (a step is a chain of ops), graph optimization `optimization` (OPTIMIZATION).

    The memory pattern planner is off: the state's shapes change within a search (the cache's positions, the
    rows of finished sentences leaving), so a planned pattern is rarely reused, only rebuilt. So is the CPU
    arena, which kept every size of state it had ever held: decoding test_2016 at batch 64, beam 5 peaked at
    470 MB of RSS with it and 352 MB without (format-2 exports), and took no longer (bench/runtime_memory.py)."""
    if optimization not in OPTIMIZATION:
        raise ValueError(f"graph optimization {optimization!r}: choose from {', '.join(OPTIMIZATION)}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = OPTIMIZATION[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    if threads:
        options.intra_op_num_threads = threads
    return options


def run_bound(session: ort.InferenceSession, arrays: dict[str, np.ndarray], values: dict[str, ort.OrtValue],
              outputs: Sequence[str], into: dict[str, ort.OrtValue] | None = None) -> Values:
    """Run through IOBinding with `arrays` (numpy) and `values` (OrtValues) bound as inputs; the `outputs` in new
    onnxruntime buffers, returned, and the outputs of `into` written into the OrtValues given there (a cache
    state's buffers, which the step writes itself)."""
    binding = session.io_binding()
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}  # alive until the run is done
    for name, array in arrays.items():
        binding.bind_cpu_input(name, array)
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for name in outputs:
        binding.bind_output(name, "cpu")
    for name, value in (into or {}).items():
        binding.bind_ortvalue_output(name, value)
    session.run_with_iobinding(binding)
    return binding.get_outputs()[: len(outputs)]


class OrtStepper:
    """Encoder, decoder step and state reorder sessions of one export, with their state in onnxruntime."""

    def __init__(self, manifest: dict[str, Any], encoder: ort.InferenceSession, decoder: ort.InferenceSession,
                 reorder: ort.InferenceSession | None) -> None:
        """reorder: the state_reorder session, None for a cache state (`manifest["cache"]`)."""
        self.encoder, self.decoder, self.reorder_session = encoder, decoder, reorder
        self.cache = manifest.get("cache")
        # the step reads the encoder tensors once per sentence, whatever the beam (export/search.py)
        self.shared_encoder = bool(manifest.get("shared_encoder"))
        self.enc_names, self.state_names = list(manifest["enc_tensors"]), list(manifest["state_tensors"])
        self.in_types = {i.name: DTYPES[i.type] for s in (encoder, decoder) for i in s.get_inputs()}
        # a cache state is written by the step's own attention (`present` outputs bound to the buffers) or by
        # `Cache.written` from the step's stacked rows (export version 3)
        self.presents = dict(self.cache.get("present") or {}) if self.cache else {}
        if self.cache:
            self.next_names = [] if self.presents else [self.cache["rows"]]
        else:
            self.next_names = ["next_" + n for n in self.state_names]
        self.reordered = [] if self.cache else list(manifest["state_reorder"]["outputs"])
        self.eos_id = int(manifest["special_ids"]["eos"])
        self.vocab = int(manifest["config"]["tgt_vocab_size"])
        self._kept: KeptBinding | None = None  # see `_run_kept`

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Values, Values | Cache]:
        """(encoder tensors, initial state) as OrtValues for ids [B, S] and lengths [B]; a cache state starts
        as empty buffers."""
        feeds = {"src": src.astype(self.in_types["src"]),
                 "src_lengths": src_lengths.astype(self.in_types["src_lengths"])}
        self.release()  # the last search's
        initial = [] if self.cache else self.state_names
        out = run_bound(self.encoder, feeds, {}, [*self.enc_names, *initial])
        enc = out[: len(self.enc_names)]
        return enc, Cache.zeros(self.cache, len(src)) if self.cache else out[len(self.enc_names):]

    def top_step(self, enc: Values, token: np.ndarray, state: Values | Cache, live: np.ndarray, last: np.ndarray,
                 k: int | None) -> tuple[np.ndarray, np.ndarray | None, Values | Cache]:
        """`export.search.TopStepFn`: the rows' k best (values, ids) from the graph's search head, with the rows
        at their `last` step replaced by `forced`; k None (the first beam step only): the [N, V] candidates,
        `export.search.candidates` of the log-probs."""
        heads = ["log_probs"] if k is None else ["top_values", "top_indices", "eos_values"]
        if isinstance(state, Cache) and self.presents:  # the buffers written by the step itself, in place
            if state.full:
                self.release()  # the buffers grow: their old memory should go as each is copied
            state.reserve()  # the step writes position `length`
            if state.views is None:
                state.views = self._views(state)
            out = self._run_kept(enc, state, token, live, k or 1, heads)
            new = state.advanced()
        else:
            arrays = {"token": token.astype(self.in_types["token"]), "live": live.astype(np.float32),
                      "k": np.array([k or 1], np.int64)}
            values = dict(zip(self.enc_names, enc, strict=True))
            if isinstance(state, Cache):  # the rows stacked, one per buffer, written here (export version 3)
                arrays[self.cache["length"]] = np.array(state.length, np.int64)
                if state.views is None:
                    state.views = self._views(state)
                values |= state.views
            else:
                values |= dict(zip(self.state_names, state, strict=True))
            outs = run_bound(self.decoder, arrays, values, [*heads, *self.next_names])
            del values  # the views of the buffers: a buffer growing in `written` lets its old memory go once copied
            out = [v.numpy() for v in outs[: len(heads)]]
            new = state.written(list(outs[len(heads)].numpy())) if isinstance(state, Cache) else outs[len(heads):]
        if k is None:
            return candidates(out[0], live, last, self.eos_id), None, new
        top, ids = out[0], out[1]
        if last.any():
            top[last], ids[last] = forced(out[2][last, 0], live[last], k, self.eos_id, self.vocab)
        return top, ids, new

    def _views(self, state: Cache) -> dict[str, ort.OrtValue]:
        """OrtValues over the cache's buffers (the same memory), made once per allocation of them."""
        return {name: ort.OrtValue.ortvalue_from_numpy(buffer)
                for name, buffer in zip(self.state_names, state.buffers, strict=True)}

    def _run_kept(self, enc: Values, state: Cache, token: np.ndarray, live: np.ndarray, k: int,
                  heads: list[str]) -> list[np.ndarray]:
        """A step whose cache the step writes itself (export version 4), through the `KeptBinding` of the steps
        since the encoder values, the cache's buffers, the heads or k last changed; the heads in onnxruntime's own
        buffers (numpy arrays bound as the outputs instead raised the peak RSS of bench/runtime_memory.py from
        155-165 MB to 175-187 MB, for 3% of a batch-1 step)."""
        kept = self._kept
        if kept is None or not kept.fits(enc, state.views, heads, k):
            kept = self._kept = KeptBinding(self, enc, state.views, heads, k)
        np.copyto(kept.inputs["token"], token, casting="unsafe")
        np.copyto(kept.inputs["live"], live, casting="unsafe")
        kept.inputs[self.cache["length"]][...] = state.length
        for name in heads:  # a name bound again replaces its binding; the first outputs bound, so first returned
            kept.binding.bind_output(name, "cpu")
        self.decoder.run_with_iobinding(kept.binding)
        return [out.numpy() for out in kept.binding.get_outputs()[: len(heads)]]

    def release(self) -> None:
        """Drop the kept binding and what it holds (the encoder tensors, the cache's buffers: an IOBinding keeps
        the numpy memory of what is bound to it alive, and has no way to unbind one input): before either is
        consumed (taken, reordered, grown), so that their old memory still goes one tensor at a time, and before a
        new search."""
        self._kept = None

    def reorder(self, state: Values | Cache, rows: np.ndarray) -> Values | Cache:
        """Row i of every state tensor from row rows[i] (beams repeated or reordered): in onnxruntime, or for a
        cache state in numpy, one buffer at a time."""
        if isinstance(state, Cache):
            self.release()
            return state.take(rows)
        values = dict(zip(self.state_names, state, strict=True))
        return run_bound(self.reorder_session, {"rows": rows.astype(np.int64)}, values, self.reordered)

    def take(self, enc: Values, rows: np.ndarray) -> Values:
        """Row i of every encoder tensor from row rows[i]: beams made, finished sentences dropped. Through numpy:
        a few times a search, not a step. Consumes `enc` one tensor at a time (the search never reads it
        again), so that only one tensor is held twice."""
        self.release()
        taken = []
        while enc:
            value = enc.pop(0)  # alive while numpy reads it: `.numpy()` of an onnxruntime output is a view
            taken.append(ort.OrtValue.ortvalue_from_numpy(np.take(value.numpy(), rows, axis=0)))
            del value
        return taken


class KeptBinding:
    """The decoder step's IOBinding for the steps of one search between changes of its encoder values, cache
    buffers (views), heads or k: the encoder tensors, buffers and presents are bound once, and the per-step
    inputs (token, live, length) to numpy arrays of this object's own, which each step writes in place. Binding
    every input and present anew took 26 bind calls a step for a 3-layer Transformer; with it a step binds only
    its heads (3), anew so that each step's outputs are fresh onnxruntime buffers."""

    def __init__(self, stepper: OrtStepper, enc: Values, views: dict[str, ort.OrtValue], heads: list[str],
                 k: int) -> None:
        self.enc, self.views, self.heads, self.k = enc, views, heads, k
        rows = next(iter(views.values())).shape()[0]
        self.binding = binding = stepper.decoder.io_binding()
        for name in heads:  # first, so that `get_outputs` returns them first
            binding.bind_output(name, "cpu")
        self.inputs = {"token": np.zeros(rows, stepper.in_types["token"]), "live": np.zeros(rows, np.float32),
                       "k": np.array([k], np.int64), stepper.cache["length"]: np.zeros((), np.int64)}
        for name, array in self.inputs.items():  # the binding holds the arrays' memory while it is bound
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        for name, value in zip(stepper.enc_names, enc, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name, value in views.items():
            binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(stepper.presents[name], value)

    def fits(self, enc: Values, views: dict[str, ort.OrtValue], heads: list[str], k: int) -> bool:
        """Whether this binding serves a step over these encoder values and buffers, with these heads and k."""
        return self.enc is enc and self.views is views and self.heads == heads and self.k == k


def forced(eos_values: np.ndarray, live: np.ndarray, k: int, eos_id: int,
           vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates of rows whose eos is forced, exactly as `top_k(candidates(...))` ranks them: every id
    but eos scores live + NEG_INF, so after eos (live + its log-prob, `eos_values`) come the lowest other ids."""
    n = len(live)
    others = np.array([i for i in range(min(k + 1, vocab)) if i != eos_id][:k], np.int64)
    ids = np.concatenate([np.full((n, 1), eos_id, np.int64), np.broadcast_to(others, (n, len(others)))], axis=1)
    values = np.concatenate([eos_values.astype(np.float32)[:, None],
                             np.broadcast_to((live.astype(np.float32) + NEG_INF)[:, None], (n, len(others)))], axis=1)
    order = np.lexsort((ids, -values), axis=-1)[:, :k]
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(ids, order, axis=1)
