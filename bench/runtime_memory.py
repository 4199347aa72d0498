"""Peak memory of the ONNX runtime on a long input: is it bounded by the model plus one batch's state?

    python bench/runtime_memory.py --export-dir DIR --input FILE [--batch-size 64] [--beam 5] [--threads 1]

Runs `python -m export.runtime DIR --input FILE` in a child process (the deployment command, nothing else
loaded) and reads its peak resident set size (`getrusage(RUSAGE_CHILDREN).ru_maxrss`, which is at least this
script's own size at the fork, far below the runtime's peak). The bound it is held
to (issue 17): twice the parameter bytes of the graphs the run loads, plus one batch's decoding state at its
largest: batch x beam rows of every state tensor at the longest length a row of FILE may reach (a * source
length + b), and the encoder tensors at the longest source, once per sentence where the export's step shares
them among a sentence's beams (model.json `shared_encoder`), else once per beam. A runtime that kept every
step's outputs, or one whose allocator never gave memory back, would exceed it on 1,000 sentences.

The peak is printed whole and less the interpreter's own: a child that only imports numpy, onnxruntime and
the runtime and exits (48 MB here) is measured the same way, and the bound is held against the difference,
what the runtime itself takes (the formula has no term for the interpreter).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from export.text import TextFrontEnd, Vocab


def parameter_bytes(path: Path) -> int:
    return sum(int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in onnx.load(str(path)).graph.initializer)


def per_row_bytes(path: Path, names: list[str], lengths: dict[str, int]) -> int:
    """Bytes of one row of the named graph inputs, symbolic axes other than the batch set from `lengths`."""
    total = 0
    for value in onnx.load(str(path), load_external_data=False).graph.input:
        if value.name not in names:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else lengths.get(d.dim_param, 1) for d in tensor.shape.dim]
        total += int(np.prod(dims[1:])) * onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", required=True)
    ap.add_argument("--input", required=True, help="one sentence a line")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.export_dir)
    manifest = json.loads((out / "model.json").read_text(encoding="utf-8"))
    files = {k: manifest[k]["file"] for k in ("encoder", "decoder_step")}
    if args.int8:
        files = {k: manifest["int8"][k] for k in files}
    params = sum(parameter_bytes(out / f) for f in files.values())
    vocab = manifest["vocab"]
    front = TextFrontEnd(manifest["tokenizer"], Vocab(vocab["src"]), Vocab(vocab["tgt"]), out)
    lines = Path(args.input).read_text(encoding="utf-8").splitlines()
    src_len = max(len(front.encode(line)) for line in lines)
    steps = int(front.row_limits(np.array([src_len]))[0])
    rows = args.batch_size * args.beam
    dec = out / files["decoder_step"]
    # growing (version 2) or written-in-place (cache) state, at the longest row's length
    state = rows * per_row_bytes(dec, manifest["state_tensors"], {"steps": steps, "capacity": steps})
    enc_rows = args.batch_size if manifest.get("shared_encoder") else rows
    enc = enc_rows * per_row_bytes(dec, manifest["enc_tensors"], {"src_len": src_len})
    cmd = [sys.executable, "-m", "export.runtime", str(out), "--input", args.input, "--batch-size",
           str(args.batch_size), "--beam", str(args.beam), "--threads", str(args.threads)] + (["--int8"] * args.int8)
    # The bare child reports its own high-water mark (VmHWM: this process image's alone; a child's ru_maxrss
    # starts at its parent's size at the fork, which for this script is about 90 MB, above the bare interpreter).
    bare = [sys.executable, "-c", "import numpy, onnxruntime, export.runtime; "
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"]
    baseline = int(subprocess.run(bare, check=True, capture_output=True, text=True).stdout) * 1024
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    bound = 2 * params + state + enc
    mb = 1e6
    print(f"{len(lines)} sentences, batch {args.batch_size}, beam {args.beam}, {args.threads} thread(s), "
          f"{'int8' if args.int8 else 'fp32'}: {seconds:.1f} s")
    own = peak - baseline
    print(f"peak RSS {peak / mb:.1f} MB, of which the bare interpreter {baseline / mb:.1f} MB; parameters "
          f"{params / mb:.1f} MB; one batch's state at its largest ({rows} rows, {steps} steps, source {src_len}): "
          f"decoder state {state / mb:.1f} MB + encoder tensors {enc / mb:.1f} MB ({enc_rows} rows); bound 2 x "
          f"parameters + state = {bound / mb:.1f} MB: the runtime's own {own / mb:.1f} MB is "
          f"{'within' if own <= bound else 'OVER'} ({own / bound:.0%}); the whole peak is {peak / bound:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
