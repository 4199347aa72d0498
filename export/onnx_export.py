"""Export a model to `encoder.onnx` + `decoder_step.onnx` + `state_reorder.onnx` + `model.json` for `export.runtime`.

Path of the weights: Flax params -> `torch_ref.convert.flax_to_torch` -> the
torch_ref mirror -> `swap_rnns` (recurrent stacks become ONNX RNN/GRU/LSTM ops
with `sequence_lens`, see export/rnn_op.py) -> `torch.onnx.export(dynamo=True)`
of the two contract graphs in export/graphs.py.

Shapes: batch and source length are dynamic. Which axis of which tensor is
which is found by running the encoder eagerly at two sample sizes and seeing
which axes follow B and S (contract: batch on axis 0), so no family declares
its tensors. Encoder tensors the decoder step never reads (for the rnn family,
everything except the context) are dropped from both graphs.

After export each graph is checked with `onnx.checker` (full), then run with
onnxruntime at sizes other than the export sample (batch 1 and 3, source 1 and
9) against the *unswapped* torch_ref model (packed sequences), so a wrong
export fails here, not in production. The maximum error is kept in model.json.

Families whose record says `cache_state` (the Transformers) export their KV
cache as buffers the runtime owns (export/cache.py): the step takes them and
their decoded `length`, and its self-attention, onnxruntime's fused
GroupQueryAttention (export/attention_op.py), writes the new position into them
through present outputs the runtime binds to the same memory; heads that op
refuses (not a multiple of 8 dimensions) return the new position's rows for the
runtime to write instead (the buffers' position axis, "capacity", is found by
building the state at two capacities). The other families' state stays in onnxruntime
between steps, and `state_reorder.onnx`, one Gather per state tensor, repeats
and reorders beams on onnxruntime's own buffers. export/step_heads.py adds the
search head (eos forcing, beam scores, per-row top-k) to every step.

Every family goes through this one path; its record's `export_note`
(s2s_jax.models.family) says what it contributes. Limits the ONNX graph would
not enforce itself are probed and written to model.json for the runtime:
`max_src_len` (the torch model refuses longer sources: location attention,
learned positions) and `max_decode_steps` (families whose record says
`state_holds_max_len` keep cfg.max_len positions in their decode state; a
cache state is bounded by the positional limit alone).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch.utils import _pytree as pytree

import torch_ref
from export import attention_op, graphs, rnn_op, step_heads
from export.cache import Cache
from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.models import family, target_limit
from torch_ref.convert import flax_to_torch

FORMAT = "s2s-jax-onnx"
# 2: the state stays in onnxruntime (search head, state_reorder.onnx); 3: cache states written in place (by the
# runtime, from the step's rows); 4: written by the step's fused attention itself (export/attention_op.py)
VERSION = 4
ENCODER_FILE, DECODER_FILE, MANIFEST_FILE = "encoder.onnx", "decoder_step.onnx", "model.json"
REORDER_FILE = "state_reorder.onnx"
CACHE_LENGTH = "length"  # the cache step's input: how many positions of the buffers are decoded
CACHE_ROWS = "cache_rows"  # its output: the new position of every buffer, stacked on a new first axis
SAMPLES = ((2, 5), (3, 7))  # (batch, source length) of the two eager runs; the first is the export sample
SAMPLE_CAPACITY, SAMPLE_LENGTH = 3, 2  # a cache state is traced at these sizes (torch.export specializes 0 and 1)
CHECK_SIZES = ((1, 1), (3, 9))  # sizes the exported graphs are run at against torch_ref
CHECK_STEPS = 3
CHECK_ATOL = CHECK_RTOL = 1e-4  # on log-probs; relative part for large trained models' large negative log-probs


Progress = Callable[[str], Any] | None
# what `progress` is told, in order (int8 only with --quantize int8)
STAGES = ("reading the checkpoint", "tracing the model", "exporting the decoder step", "exporting the encoder",
          "checking the graphs", "onnxruntime against torch_ref", "int8 quantization")


def _sample_batch(cfg: ModelConfig, batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random non-special source ids [B, S] with ragged lengths (the first row full, the rest >= 1)."""
    rng = np.random.default_rng(seed)
    specials = {cfg.pad_id, cfg.bos_id, cfg.eos_id}
    pool = np.array([i for i in range(cfg.src_vocab_size) if i not in specials] or [0])
    lengths = np.concatenate([[length], rng.integers(1, length + 1, batch - 1)]).astype(np.int64)
    src = rng.choice(pool, (batch, length)).astype(np.int64)
    src[np.arange(length)[None, :] >= lengths[:, None]] = cfg.pad_id
    return torch.from_numpy(src), torch.from_numpy(lengths)


def _capacity_axis(methods: graphs.StateMethods, enc: Any, names: list[str]) -> int:
    """The position axis of a cache state: the one axis that follows the capacity, the same in every tensor."""
    small, large = (pytree.tree_leaves(methods.init(enc, c)) for c in (SAMPLE_CAPACITY, SAMPLE_CAPACITY + 1))
    found = set()
    for name, x, y in zip(names, small, large, strict=True):
        axes = [a for a, (n0, n1) in enumerate(zip(x.shape, y.shape, strict=True)) if n0 != n1]
        if len(axes) != 1:
            raise ValueError(f"{name}: a cache state tensor needs exactly one position axis, got {axes}")
        found.add(axes[0])
    if len(found) != 1:
        raise ValueError(f"cache state tensors {names} put their positions on different axes {sorted(found)}")
    return found.pop()


def _axes(runs: list[tuple[tuple[int, ...], int, int]], name: str) -> dict[int, str]:
    """{axis: "batch" | "src_len"} of one tensor from its shapes at the sample sizes; constant axes are static."""
    axes: dict[int, str] = {}
    (shape0, b0, s0), (shape1, b1, s1) = runs
    if len(shape0) != len(shape1):
        raise ValueError(f"{name} changes rank with the input size")
    for axis, (n0, n1) in enumerate(zip(shape0, shape1, strict=True)):
        if n0 == n1:
            continue
        if (n0, n1) == (b0, b1):
            axes[axis] = "batch"
        elif (n0, n1) == (s0, s1):
            axes[axis] = "src_len"
        else:
            raise ValueError(f"{name} axis {axis} is {n0} then {n1} for batch {b0}/{b1} and source {s0}/{s1}: "
                             "only batch and source-length axes can be dynamic")
    if axes and axes.get(0) != "batch":
        raise ValueError(f"{name}: the contract puts the batch on axis 0, got axes {axes}")
    return axes


def _trees(model: torch.nn.Module, src: torch.Tensor, lengths: torch.Tensor, cached: bool = False):
    with torch.no_grad():
        enc = model.encode(src, lengths)
        return enc, graphs.StateMethods(model, cached).init(enc, SAMPLE_CAPACITY)


def _unused_inputs(proto: onnx.ModelProto) -> set[str]:
    """Graph inputs no node reads (subgraphs included) and no output returns."""
    used: set[str] = {o.name for o in proto.graph.output}

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            used.update(node.input)
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    visit(sub)

    visit(proto.graph)
    return {i.name for i in proto.graph.input} - used


def _export(module: torch.nn.Module, args: tuple, dynamic_shapes: Any, input_names: list[str],
            output_names: list[str]) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) with the RNN translations; its progress lines are shown only on failure."""
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            program = torch.onnx.export(
                module.eval(), args, dynamo=True, dynamic_shapes=dynamic_shapes, input_names=input_names,
                output_names=output_names, custom_translation_table=rnn_op.TRANSLATIONS, verbose=False,
            )
    except Exception:
        print(log.getvalue(), file=sys.stderr)
        raise
    return program.model_proto


def source_limit(model: torch.nn.Module, cfg: ModelConfig) -> int | None:
    """The longest source `model` accepts, or None. Families with a positional limit (location attention,
    learned positions) refuse cfg.max_len + 1 tokens in torch; the ONNX graph would not (a negative Pad crops),
    so the limit goes into model.json and the runtime enforces it."""
    try:
        _trees(model, *_sample_batch(cfg, 1, cfg.max_len + 1, 0))
    except (UserError, IndexError):
        return cfg.max_len
    return None


def _dims(axes: dict[int, str], dims: dict[str, Any]) -> dict[int, Any] | None:
    return {axis: dims[kind] for axis, kind in axes.items()} or None


def export_graphs(cfg: ModelConfig, params: Any, out: Path, progress: Progress = None) -> dict[str, Any]:
    """Write the graphs into `out`; return the graph part of model.json (names, axes, check errors). `progress(s)`
    is told each stage as it starts (`s2s-jax export`'s progress bar)."""
    tell = progress or (lambda stage: None)
    tell("tracing the model")
    reference = torch_ref.build_model(cfg)
    reference.load_state_dict(flax_to_torch(cfg, params), strict=True)
    reference.eval()
    model = copy.deepcopy(reference)
    rnn_op.swap_rnns(model)
    cached = family(cfg).cache_state
    in_place = cached and attention_op.swap_cached_attention(model) > 0
    methods = graphs.StateMethods(model, cached)

    # Names, specs and dynamic axes from two eager runs.
    runs = []
    for seed, (b, s) in enumerate(SAMPLES):
        enc, state = _trees(model, *_sample_batch(cfg, b, s, seed), cached)
        runs.append((graphs.flatten(enc, "enc"), graphs.flatten(state, "state"), b, s))
        if seed == 0:
            enc_tree0 = enc
    (enc_names, enc0, enc_spec), (state_names, state0, state_spec), b0, s0 = runs[0]
    shapes = {name: [] for name in enc_names + state_names}
    for (en, el, _), (sn, sl, _), b, s in runs:
        for name, leaf in zip(en + sn, el + sl, strict=True):
            shapes[name].append((tuple(leaf.shape), b, s))
    axes = {name: _axes(runs_of, name) for name, runs_of in shapes.items()}
    cache_axis = _capacity_axis(methods, enc_tree0, state_names) if cached else None
    step_axes = {n: {**axes[n], **({cache_axis: "capacity"} if cached else {})} for n in state_names}
    dims = {"batch": torch.export.Dim("batch"), "src_len": torch.export.Dim("src_len"),
            "capacity": torch.export.Dim("capacity"), "sentences": torch.export.Dim("sentences")}
    # A cache-state step reads the encoder tensors once per sentence (beams are consecutive rows of one sentence,
    # torch_ref's shared_cross_attention): traced with two rows a sentence, the encoder batch axis its own.
    enc_axes = {n: {a: "sentences" if k == "batch" else k for a, k in axes[n].items()} if cached else axes[n]
                for n in enc_names}
    rows_per_sentence = 2 if cached else 1

    # Decoder first, with every encoder tensor; the ones it never reads are dropped from both graphs.
    tell("exporting the decoder step")
    token = torch.full((b0 * rows_per_sentence,), cfg.bos_id, dtype=torch.long)
    step_names = [] if in_place else [CACHE_ROWS] if cached else ["next_" + n for n in state_names]
    length = [CACHE_LENGTH] if cached else []
    decoder = graphs.DecoderStepGraph(model, enc_spec, list(range(len(enc_names))), state_spec, cached, in_place)
    dec_dynamic = {"token": {0: dims["batch"]}, "enc": tuple(_dims(enc_axes[n], dims) for n in enc_names),
                   "state": tuple(_dims(step_axes[n], dims) for n in state_names)}
    dec_args: tuple = (token, tuple(enc0), tuple(x.repeat_interleave(rows_per_sentence, 0) for x in state0))
    if cached:
        dec_dynamic["length"] = None
        dec_args += (torch.tensor(SAMPLE_LENGTH, dtype=torch.long),)
    dec_proto = _export(decoder, dec_args, dec_dynamic, ["token", *enc_names, *state_names, *length],
                        ["log_probs", *step_names])
    presents = attention_op.expose_presents(dec_proto, state_names) if in_place else {}
    # State inputs stay even if unread (e.g. the last attention weights, which the step only writes):
    # the runtime feeds the state back whole.
    unused = _unused_inputs(dec_proto) & set(enc_names)
    keep = [i for i, n in enumerate(enc_names) if n not in unused]
    kept_names = [enc_names[i] for i in keep]
    for value in [v for v in dec_proto.graph.input if v.name in unused]:
        dec_proto.graph.input.remove(value)

    step_heads.add_search_head(dec_proto, log_probs="log_probs", eos_id=cfg.eos_id)
    graphs_out = [(dec_proto, DECODER_FILE)]
    if not cached:  # a cache state is reordered in numpy, where it lies (export/cache.py)
        graphs_out.append((step_heads.reorder_graph(dec_proto, state_names), REORDER_FILE))

    tell("exporting the encoder")
    encoder = graphs.EncoderGraph(model, keep, cached)
    src, lengths = _sample_batch(cfg, b0, s0, 0)
    enc_dynamic = {"src": {0: dims["batch"], 1: dims["src_len"]}, "src_lengths": {0: dims["batch"]}}
    initial = [] if cached else state_names
    enc_proto = _export(encoder, (src, lengths), enc_dynamic, ["src", "src_lengths"], [*kept_names, *initial])

    tell("checking the graphs")
    for proto, name in [(enc_proto, ENCODER_FILE), *graphs_out]:
        onnx.save_model(proto, out / name)
        onnx.checker.check_model(str(out / name), full_check=True)

    head = [step_heads.LIVE, step_heads.K]
    spec = {
        "encoder": {"file": ENCODER_FILE, "inputs": ["src", "src_lengths"], "outputs": [*kept_names, *initial]},
        "decoder_step": {"file": DECODER_FILE, "inputs": ["token", *kept_names, *state_names, *length, *head],
                         "outputs": ["log_probs", *step_names, *presents.values(), step_heads.TOP_VALUES,
                                     step_heads.TOP_INDICES, step_heads.EOS_VALUES]},
        "state_reorder": None if cached else {"file": REORDER_FILE, "inputs": [step_heads.ROWS, *state_names],
                                              "outputs": [step_heads.REORDERED + n for n in state_names]},
        "enc_tensors": kept_names,
        "state_tensors": state_names,
        "cache": _cache_spec(state_names, state0, cache_axis, presents) if cached else None,
        "shared_encoder": cached,
        "dynamic_axes": {n: {str(a): k for a, k in {**axes[n], **step_axes.get(n, {})}.items()}
                         for n in kept_names + state_names},
        "max_src_len": source_limit(reference, cfg),
    }
    tell("onnxruntime against torch_ref")
    spec["check"] = check_against_torch(cfg, reference, out, spec)
    return spec


def _cache_spec(names: list[str], sample: list[torch.Tensor], axis: int, presents: dict[str, str]) -> dict[str, Any]:
    """model.json's `cache`: what export/cache.py needs to allocate the buffers (shapes with 0 for the rows and
    the positions), and how the step writes them: through the outputs `present` (buffer -> output name), which
    the runtime binds to the buffers themselves, or (no presents) the output `rows` stacking the new position of
    every buffer, which the runtime writes."""
    shapes = {}
    for name, leaf in zip(names, sample, strict=True):
        shape = [0, *leaf.shape[1:]]
        shape[axis] = 0
        shapes[name] = shape
    written = {"present": presents} if presents else {"rows": CACHE_ROWS}
    return {"axis": axis, "length": CACHE_LENGTH, **written, "shapes": shapes, "dtype": str(sample[0].numpy().dtype)}


def check_against_torch(cfg: ModelConfig, reference: torch.nn.Module, out: Path, spec: dict[str, Any]) -> dict:
    """Run the graphs with onnxruntime at CHECK_SIZES and compare step log-probs with torch_ref (packed RNNs)."""
    import onnxruntime as ort

    enc_sess = ort.InferenceSession(str(out / ENCODER_FILE), providers=["CPUExecutionProvider"])
    dec_sess = ort.InferenceSession(str(out / DECODER_FILE), providers=["CPUExecutionProvider"])
    worst, excess, sizes = 0.0, 0.0, []
    for seed, (b, s) in enumerate(CHECK_SIZES, start=10):
        s = min(s, spec["max_src_len"] or s)
        sizes.append([b, s])
        src, lengths = _sample_batch(cfg, b, s, seed)
        feeds = dict(zip(spec["encoder"]["inputs"], (src.numpy(), lengths.numpy()), strict=True))
        values = dict(zip(spec["encoder"]["outputs"], enc_sess.run(None, feeds), strict=True))
        enc, state = _trees(reference, src, lengths)
        token = torch.full((b,), cfg.bos_id, dtype=torch.long)
        rng = np.random.default_rng(seed)
        values.update({step_heads.LIVE: np.zeros(b, np.float32), step_heads.K: np.array([1], np.int64)})
        # one position to start with, so that the buffers grow at the second step
        buffers = Cache.zeros(spec["cache"], b, capacity=1) if spec["cache"] else None
        presents = (spec["cache"] or {}).get("present")
        for _ in range(CHECK_STEPS):
            values["token"] = token.numpy()
            if presents:
                buffers.reserve()  # the step writes position `length`
            if buffers is not None:
                values.update(buffers.feeds())
            feeds = {n: values[n] for n in spec["decoder_step"]["inputs"]}
            if presents:  # the step writes the buffers: its present outputs bound to them, as in the runtime
                outputs = [_run_in_place(dec_sess, feeds, presents, buffers)]
            else:
                outputs = dec_sess.run(None, feeds)
            # log-probs, state (a cache state: its stacked rows); the search head's follow
            outputs = outputs[: 2] if buffers is not None else outputs[: 1 + len(spec["state_tensors"])]
            with torch.no_grad():
                logits, state = graphs.contract_step(reference, enc, token, state)
            expected = torch.log_softmax(logits.float(), dim=-1).numpy()
            error = np.abs(outputs[0] - expected)
            worst = max(worst, float(error.max()))
            excess = max(excess, float((error - CHECK_RTOL * np.abs(expected)).max()))
            if buffers is not None:
                buffers = buffers.advanced() if presents else buffers.written(list(outputs[1]))
            else:
                values.update(zip(spec["state_tensors"], outputs[1:], strict=True))
            token = torch.from_numpy(rng.integers(0, cfg.tgt_vocab_size, b).astype(np.int64))
    if not excess <= CHECK_ATOL:
        raise RuntimeError(f"exported graphs differ from torch_ref by up to {worst:.3g} in log-probs "
                           f"(tolerance {CHECK_ATOL} + {CHECK_RTOL} * |log-prob|); the export is wrong")
    return {"sizes": sizes, "steps": CHECK_STEPS, "max_abs_logprob_error": worst}


def _run_in_place(session: Any, feeds: dict[str, np.ndarray], presents: dict[str, str], buffers: Cache) -> np.ndarray:
    """The step's log-probs, its present outputs written into `buffers` (bound to the same memory), as the
    runtime runs it (`export.ort_step.run_bound`)."""
    import onnxruntime as ort

    from export.ort_step import run_bound

    views = {name: ort.OrtValue.ortvalue_from_numpy(buffer)
             for name, buffer in zip(buffers.spec["shapes"], buffers.buffers, strict=True)}
    arrays = {name: array for name, array in feeds.items() if name not in views}
    into = {output: views[name] for name, output in presents.items()}
    return run_bound(session, arrays, views, ["log_probs"], into)[0].numpy()


def tokenizer_spec(task: Any, out: Path) -> dict[str, Any] | None:
    """What the numpy runtime needs to turn text into ids and back, per task (None: ids only).

    Text tasks: each side's tokenizer settings (`save_tokenizer`, which also writes a SentencePiece model
    into `out` under the name the settings give; one file when both sides share it, as in the workdir)
    and the a * source_length + b decoding bound; export/text.py reads them."""
    if task is None:
        return None
    if task.name == "addition":
        return {"type": "addition", "digits": task.digits, "src_len": task.src_len}
    if task.name == "translation":
        from s2s_jax.data.tokenizers import save_tokenizer

        if task.src_tok is task.tgt_tok:
            src = tgt = save_tokenizer(task.src_tok, out, "spm.joint")
        else:
            src, tgt = save_tokenizer(task.src_tok, out, "spm.src"), save_tokenizer(task.tgt_tok, out, "spm.tgt")
        return {"type": "text", "src": src, "tgt": tgt, "len_a": task.len_a, "len_b": task.len_b}
    raise UserError(f"export: no runtime tokenizer for task {task.name!r}; add it to export.onnx_export.tokenizer_spec "
                    "and export.runtime.TOKENIZERS")


def _prepare_out(out: str | Path) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST_FILE).exists():
        raise UserError(f"--out {path} is a non-empty directory without {MANIFEST_FILE}; choose a new or empty one")
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_model(cfg: ModelConfig, params: Any, out: str | Path, *, task: Any = None, preset: str | None = None,
                 quantize: str | None = None, progress: Progress = None) -> dict[str, Any]:
    """Export `params` of `cfg` into `out`; `task` supplies vocab and tokenizer. Returns the manifest. `progress`:
    see `export_graphs` (STAGES lists the stages)."""
    record = family(cfg)  # an unknown family is a ConfigError naming the known ones
    if quantize not in (None, "int8"):
        raise UserError(f"--quantize {quantize!r}: only 'int8' is supported")
    path = _prepare_out(out)
    for stale in [*path.glob("*.onnx"), *path.glob("spm.*.model")]:
        stale.unlink()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        "config": cfg.to_dict(),
        "task": None if task is None else task.settings(),
        "vocab": None if task is None else {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()},
        "special_ids": {"pad": cfg.pad_id, "bos": cfg.bos_id, "eos": cfg.eos_id},
        "tokenizer": tokenizer_spec(task, path),
        "max_decode_len": cfg.max_len if task is None else int(task.max_decode_len),
        "max_decode_steps": target_limit(cfg) if record.cache_state
        else cfg.max_len if record.state_holds_max_len else None,
    }
    if manifest["max_decode_steps"] is not None:
        manifest["max_decode_len"] = min(manifest["max_decode_len"], manifest["max_decode_steps"])
    manifest.update(export_graphs(cfg, params, path, progress))
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if quantize == "int8":
        from export.quantize import quantize_export

        if progress:
            progress("int8 quantization")
        manifest["int8"] = quantize_export(path)
    return manifest


def export_workdir(workdir: str | Path, out: str | Path, quantize: str | None = None,
                   which: str | int = "best", progress: Progress = None) -> dict[str, Any]:
    """`s2s-jax export`: a checkpoint ("best", "latest" or a step) of a training workdir -> an ONNX export in `out`."""
    from s2s_jax.run.workdir import load_run  # orbax only when a workdir is read

    if progress:
        progress("reading the checkpoint")
    run = load_run(workdir, which)
    return export_model(run.config.model, run.params, out, task=run.task, preset=run.config.preset or None,
                        quantize=quantize, progress=progress)


def describe(manifest: dict[str, Any], out: str | Path) -> str:
    """A few lines for the terminal: files, sizes, check error."""
    path = Path(out)
    lines = [f"exported {manifest['config']['family']} model to {path}"]
    for key in [k for k in ("encoder", "decoder_step", "state_reorder") if manifest[k]]:
        f = path / manifest[key]["file"]
        lines.append(f"  {f.name}: {f.stat().st_size / 1e6:.2f} MB")
    check = manifest["check"]
    lines.append(f"  onnxruntime vs torch_ref at (batch, source) {check['sizes']}: "
                 f"max |log-prob error| {check['max_abs_logprob_error']:.2e}")
    if "int8" in manifest:
        q = manifest["int8"]
        lines.append(f"  int8: {q['bytes_fp32'] / 1e6:.2f} MB -> {q['bytes_int8'] / 1e6:.2f} MB "
                     f"({q['bytes_int8'] / q['bytes_fp32']:.0%}); quantized ops: {q['quantized_ops']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`s2s-jax export --workdir DIR --out DIR [--quantize int8]` (also `python -m export.onnx_export`)."""
    parser = argparse.ArgumentParser(prog="s2s-jax export", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="training workdir (config.json, vocab.json, checkpoints/)")
    parser.add_argument("--out", required=True, help="output directory for the .onnx files and model.json")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="also write int8 dynamic-quantized graphs")
    args = parser.parse_args(argv)
    try:
        manifest = export_workdir(args.workdir, args.out, args.quantize)
    except (UserError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(manifest, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
