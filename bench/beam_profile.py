"""Where one beam-search step's time goes, JAX vs torch_ref: the model's decode_step, its vocabulary projection,
the search arithmetic (log-softmax and top-k over beam x vocab) and the reorder of the decoder state.

    python bench/beam_profile.py --workdir runs/quality/core0/bentrevett-transformer [--batch 64] [--beam 5] \
        [--max-len 14]

bench/decode.py measures whole searches; this splits a step at batch x beam rows
(decoder state advanced to `--position` first, so attention caches are part full)
to show what bounds the JAX/torch ratio: when the step is dominated by the
projection onto the target vocabulary, both frameworks run the same float32
matmul and neither can be much faster than that matmul allows; when the state is
large (a KV cache), reordering it each step costs memory traffic in both. The JAX
parts are those of `s2s_jax.decoding.search` (the family's own state reorder where its
record has one); torch_ref's are what the numpy search (`export.search`, which drives
torch_ref as it drives onnxruntime) runs: torch's step and log-softmax, then numpy's
top-k and whole-row takes of the state arrays. Each timing is the best of `--reps`.
This is a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.utils import _pytree as pytree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardware import best_seconds, jax_matmul_gflops, machine_line  # noqa: E402

from export import search as np_search  # noqa: E402
from s2s_jax.decoding.search import log_softmax, model_step, parent_rows, repeat_beams, take_rows  # noqa: E402
from s2s_jax.decoding.topk import top_k  # noqa: E402
from s2s_jax.models import build_model, family  # noqa: E402
from s2s_jax.run.translate import chunk_width  # noqa: E402
from s2s_jax.run.workdir import load_run  # noqa: E402
from torch_ref import build_model as build_torch  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402


def best_ms(fn: Callable[[], object], reps: int) -> float:
    return 1000 * best_seconds(fn, reps)


def chained(fn: Callable[[Any], Any], state: Any) -> Callable[[], object]:
    """Time `fn` (state -> (outputs, state), jitted with the state donated) as a decoding loop runs it: calls
    chained on a copy of `state`, so in-place updates are timed as in place, not as copies of the whole state.
    The outputs are waited for too, so nothing the loop needs (the logits) is dropped as dead code."""
    holder = {"state": jax.tree.map(jnp.copy, state)}

    def run() -> None:
        holder["state"] = jax.block_until_ready(fn(holder["state"]))[1]

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--position", type=int, default=15, help="decode steps taken before timing one")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--max-len", type=int, default=None,
                   help="the state's length (bench/decode.py --forced N decodes with N); default: the task's limit")
    p.add_argument("--torch-threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    run = load_run(args.workdir, "best")
    cfg, rows = run.config.model, args.batch * args.beam
    sources = [s for s, _ in run.task.read_splits(["test"])["test"][: args.batch]]
    src, lengths = run.task.encode_inputs(sources)
    src = src[:, : chunk_width(int(np.max(lengths)), src.shape[1], getattr(run.task, "buckets", None))]  # as decoded
    max_len = args.max_len or int(run.task.decode_limit(np.array([src.shape[1]]))[0])
    if not args.position < max_len:
        p.error(f"--position {args.position} must be below the state's length {max_len}")
    model, variables = build_model(cfg), {"params": run.params}
    tokens = np.random.default_rng(0).integers(4, cfg.tgt_vocab_size, (args.position + 1, rows)).astype(np.int32)

    # JAX: state after `position` steps, then one step timed alone and the search arithmetic timed alone
    sentences = model.apply(variables, src, lengths, method="encode")
    state = model.apply(variables, repeat_beams(sentences, args.beam), max_decode_len=max_len,
                        method="init_decode_state")
    # What the search passes decode_step: one encoder row per sentence where the family shares it across beams.
    enc = sentences if family(cfg).shared_encoder else repeat_beams(sentences, args.beam)
    reorder_state = model_step(model, run.params)["reorder"] or take_rows
    step = jax.jit(lambda e, t, s: model.apply(variables, e, t, s, method="decode_step"))
    for t in tokens[:-1]:
        _, state = step(enc, jnp.asarray(t), state)
    token = jnp.asarray(tokens[-1])
    logits, _ = step(enc, token, state)
    search = jax.jit(lambda x: top_k(log_softmax(x).reshape(args.batch, -1), 2 * args.beam))
    out_kernel = max((x for x in jax.tree.leaves(run.params) if x.ndim == 2 and x.shape[-1] == cfg.tgt_vocab_size),
                     key=lambda x: x.shape[0])
    hidden = jnp.ones((rows, out_kernel.shape[0]), jnp.float32)
    project = jax.jit(lambda h: h @ out_kernel)
    parents = np.random.default_rng(1).integers(0, args.beam, (args.batch, args.beam))
    rows_of_parents = parent_rows(jnp.asarray(parents), args.beam)
    reorder = jax.jit(lambda s: ((), reorder_state(s, rows_of_parents)), donate_argnums=0)
    step_in_place = jax.jit(lambda s: model.apply(variables, enc, token, s, method="decode_step"), donate_argnums=0)
    # The step's timed calls advance a copy of the state, pos -> pos + reps + 1; past the cache's end its write is
    # dropped (the cache's `mode="drop"` scatter), at the same cost: attention spans the whole fixed-size cache.
    jax_ms = {
        "decode_step (whole model)": best_ms(chained(step_in_place, state), args.reps),
        "  of which vocab projection": best_ms(lambda: project(hidden).block_until_ready(), args.reps),
        "log-softmax + top-k": best_ms(lambda: jax.block_until_ready(search(logits)), args.reps),
        "state reorder": best_ms(chained(reorder, state), args.reps),
    }

    # torch_ref: the same, as the numpy search runs it
    tmodel = build_torch(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, run.params))
    tmodel.eval()
    with torch.inference_mode():
        tsrc, tlen = torch.as_tensor(np.asarray(src), dtype=torch.int64), torch.as_tensor(np.asarray(lengths))
        tenc = pytree.tree_map(lambda x: x.repeat_interleave(args.beam, dim=0), tmodel.encode(tsrc, tlen))
        tstate = tmodel.init_decode_state(tenc, max_len)
        for t in tokens[:-1]:
            _, tstate = tmodel.decode_step(tenc, torch.as_tensor(t, dtype=torch.int64), tstate)
        ttoken = torch.as_tensor(tokens[-1], dtype=torch.int64)
        tlogits, _ = tmodel.decode_step(tenc, ttoken, tstate)
        tkernel = torch.from_numpy(np.array(out_kernel))
        thidden = torch.ones((rows, tkernel.shape[0]))
        state_arrays = [leaf.numpy() for leaf in pytree.tree_leaves(tstate)]
        np_rows = np.asarray(rows_of_parents)

        def torch_search() -> object:
            logp = torch.log_softmax(tlogits.float(), dim=-1).numpy()
            return np_search.top_k(logp.reshape(args.batch, -1), 2 * args.beam)

        torch_ms = {
            "decode_step (whole model)": best_ms(lambda: tmodel.decode_step(tenc, ttoken, tstate), args.reps),
            "  of which vocab projection": best_ms(lambda: thidden @ tkernel, args.reps),
            "log-softmax + top-k": best_ms(torch_search, args.reps),
            "state reorder": best_ms(lambda: np_search.take_rows(state_arrays, np_rows), args.reps),
        }
    peak = jax_matmul_gflops()
    proj_gflop = 2 * rows * out_kernel.shape[0] * cfg.tgt_vocab_size / 1e9
    print(machine_line())
    print(f"{cfg.family} emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers}, vocab {cfg.tgt_vocab_size}; "
          f"batch {args.batch} x beam {args.beam} = {rows} rows, source width {src.shape[1]}, state at step "
          f"{args.position} of {max_len}; torch {args.torch_threads} threads\n")
    print("| part of one beam step | JAX ms | torch_ref ms | torch/JAX |")
    print("|---|---|---|---|")
    for name in jax_ms:
        print(f"| {name} | {jax_ms[name]:.2f} | {torch_ms[name]:.2f} | {torch_ms[name] / jax_ms[name]:.2f}x |")
    whole = ("decode_step (whole model)", "log-softmax + top-k", "state reorder")
    total_j, total_t = sum(jax_ms[k] for k in whole), sum(torch_ms[k] for k in whole)
    print(f"| step + search + reorder | {total_j:.2f} | {total_t:.2f} | {total_t / total_j:.2f}x |")
    print(f"\nvocab projection: {proj_gflop:.2f} GFLOP per step; at the measured float32 matmul peak "
          f"({peak:.0f} GFLOP/s) it alone needs {1000 * proj_gflop / peak:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
