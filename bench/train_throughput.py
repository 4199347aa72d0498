"""Training throughput, JAX vs the PyTorch mirror, on one preset with the same weights and batch.

    python bench/train_throughput.py --preset bentrevett-gru --emb-dim 128 --hid-dim 256

JAX: the library's jitted train step (`s2s_jax.training.steps`: Adam after global-norm
clipping, masked cross-entropy, donated state), timed after a warm-up that compiles it,
with `block_until_ready`. torch: eager `torch_ref` model, `torch.optim.Adam` +
`clip_grad_norm_`, the same loss. Both run in train mode (dropout on). Prints target
tokens/s for each, the ratio JAX/torch, and the hardware and versions the numbers
came from. This is a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import torch_ref
from s2s_jax import build_model, presets
from s2s_jax.training.state import create_train_state
from s2s_jax.training.steps import make_eval_step, make_optimizer, make_train_step
from torch_ref.convert import flax_to_torch

LR, CLIP = 1e-3, 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--emb-dim", type=int)
    p.add_argument("--hid-dim", type=int)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--src-len", type=int, default=20)
    p.add_argument("--tgt-len", type=int, default=20)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: torch's choice)")
    return p.parse_args(argv)


def make_batch(cfg, batch: int, src_len: int, tgt_len: int, seed: int) -> dict[str, np.ndarray]:
    """Random padded batch with ragged lengths in [len/2, len]; tgt_out is tgt_in shifted left."""
    rng = np.random.default_rng(seed)
    src_lengths = rng.integers(max(1, src_len // 2), src_len + 1, batch).astype(np.int32)
    tgt_lengths = rng.integers(max(1, tgt_len // 2), tgt_len + 1, batch).astype(np.int32)
    src = rng.integers(3, cfg.src_vocab_size, (batch, src_len)).astype(np.int32)
    src[np.arange(src_len)[None, :] >= src_lengths[:, None]] = cfg.pad_id
    tgt = rng.integers(3, cfg.tgt_vocab_size, (batch, tgt_len + 1)).astype(np.int32)
    tgt[:, 0] = cfg.bos_id
    tgt[np.arange(tgt_len + 1)[None, :] > tgt_lengths[:, None]] = cfg.pad_id
    return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:],
            "tgt_lengths": tgt_lengths}


def torch_loss(tmodel: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over target tokens with t < tgt_lengths (the JAX step's loss)."""
    logits = tmodel(b["src"], b["src_lengths"], b["tgt_in"])
    mask = (torch.arange(b["tgt_out"].shape[1])[None, :] < b["tgt_lengths"][:, None]).float()
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b["tgt_out"], reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    sizes = {k: v for k, v in (("emb_dim", args.emb_dim), ("hid_dim", args.hid_dim)) if v is not None}
    cfg = presets.get(args.preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, **sizes)
    batch = make_batch(cfg, args.batch, args.src_len, args.tgt_len, args.seed)
    tokens = int(batch["tgt_lengths"].sum())

    model = build_model(cfg)
    tx = make_optimizer(LR, CLIP)
    state = create_train_state(model, cfg, tx, args.seed, batch)
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, state.params), strict=True)  # copies, before donation
    t_batch = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}

    # Same weights, same batch: the deterministic losses must agree before timing means anything.
    j_eval = make_eval_step(model)(state.params, batch)
    j_loss0 = float(j_eval["loss_sum"] / j_eval["tokens"])
    tmodel.eval()
    with torch.no_grad():
        t_loss0 = float(torch_loss(tmodel, t_batch))

    step = make_train_step(model, tx)
    j_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        state, metrics = step(state, j_batch)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = step(state, j_batch)
    jax.block_until_ready(state)
    jax_s = time.perf_counter() - t0

    tmodel.train()
    opt = torch.optim.Adam(tmodel.parameters(), lr=LR)

    def torch_step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch_loss(tmodel, t_batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), CLIP)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        torch_step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        t_last = torch_step()
    torch_s = time.perf_counter() - t0

    jax_tps = tokens * args.steps / jax_s
    torch_tps = tokens * args.steps / torch_s
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"preset {args.preset}: emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers} vocab {args.vocab} "
          f"dropout {cfg.dropout}; batch {args.batch} src_len {args.src_len} tgt_len {args.tgt_len}; "
          f"{tokens} target tokens/step; {args.steps} timed steps after {args.warmup} warm-up")
    print(f"initial eval loss: jax {j_loss0:.6f} torch {t_loss0:.6f} (|diff| {abs(j_loss0 - t_loss0):.2e})")
    print(f"final train loss: jax {float(metrics['loss']):.4f} torch {t_last:.4f}")
    print(f"jax:   {jax_tps:10.1f} target tokens/s ({1000 * jax_s / args.steps:.1f} ms/step; "
          f"warm-up incl. compile {compile_s:.1f} s)")
    print(f"torch: {torch_tps:10.1f} target tokens/s ({1000 * torch_s / args.steps:.1f} ms/step)")
    print(f"ratio jax/torch: {jax_tps / torch_tps:.2f}")


if __name__ == "__main__":
    main()
