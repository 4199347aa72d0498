"""`s2s-jax plot`: a workdir's training and validation curves in one PNG.

Left: training loss per log interval (train.jsonl) and held-out teacher-forced
loss per evaluation (metrics.jsonl) against the step. Right: held-out greedy exact
match (and BLEU, when it was measured) per evaluation. matplotlib is imported here
only, with the Agg backend, so this works on a headless machine.
"""

from __future__ import annotations

from pathlib import Path

from s2s_jax.errors import UserError
from s2s_jax.training.logs import METRICS_FILE, TRAIN_LOG_FILE, read_jsonl


def plot_curves(workdir: str | Path, out: str | Path | None = None) -> Path:
    """Write the curves of `workdir` to `out` (default WORKDIR/curves.png); returns the path written."""
    path = Path(workdir)
    if not path.is_dir():
        raise UserError(f"workdir {path} does not exist")
    train = [r for r in read_jsonl(path / TRAIN_LOG_FILE) if "loss" in r]
    heldout = [r for r in read_jsonl(path / METRICS_FILE) if "step" in r]
    if not train and not heldout:
        raise UserError(f"{path} has no {TRAIN_LOG_FILE} or {METRICS_FILE} records to plot; train in it first")
    out = Path(out) if out else path / "curves.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: the plot is written as PNG; give a path ending in .png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        left.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", color="tab:blue")
    with_loss = [r for r in heldout if "heldout_loss" in r]
    if with_loss:
        left.plot([r["step"] for r in with_loss], [r["heldout_loss"] for r in with_loss], "o-",
                  label="held-out loss (teacher forced)", color="tab:orange")
    left.set_xlabel("step")
    left.set_ylabel("cross-entropy per token")
    left.set_title("loss")
    left.grid(alpha=0.3)
    left.legend()
    for key, label, color in (("exact_match", "exact match", "tab:green"), ("bleu", "BLEU / 100", "tab:red")):
        rows = [r for r in heldout if key in r]
        if rows:
            scale = 100.0 if key == "bleu" else 1.0
            right.plot([r["step"] for r in rows], [r[key] / scale for r in rows], "o-", label=label, color=color)
    right.set_xlabel("step")
    right.set_ylim(-0.02, 1.02)
    right.set_title("held-out greedy decoding")
    right.grid(alpha=0.3)
    if heldout:
        right.legend()
    fig.suptitle(path.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=100)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out
