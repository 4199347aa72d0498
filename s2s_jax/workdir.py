"""A run's workdir: everything `translate` needs to rebuild the model, and nothing else.

Layout:
    config.json    the RunConfig: {"model", "data" (task settings), "optimizer", "training", "decoding"}
    vocab.json     {"src": Vocab, "tgt": Vocab}
    tokenizer.json text tasks only: tokenizer settings (+ spm.*.model SentencePiece files)
    checkpoints/   orbax CheckpointManager; each step holds items `params`, `opt_state`
                   and `meta` (step, dropout RNG, data position, config, vocab); see training/checkpoint.py
    manifest.json  size and sha256 of every file of every finished checkpoint step; latest and best step
    metrics.jsonl  one line per held-out evaluation during training (step, exact_match, heldout_loss)
    train.jsonl    one line per log interval (loss, lr, throughput); tb/ the same as TensorBoard events

The manifest is checked before orbax reads anything: a truncated or edited
checkpoint is reported as such, instead of failing deep inside tensorstore.

Items are separate so inference restores `params` alone, without rebuilding the
optimizer. Every failure to read a workdir is a `UserError` naming the path.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from s2s_jax.config import ModelConfig
from s2s_jax.data.tasks import build_task
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError
from s2s_jax.models import build_model
from s2s_jax.training import checkpoint
from s2s_jax.training.logs import read_json
from s2s_jax.training.state import TrainState, init_params

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
CHECKPOINT_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass
class Run:
    """What a workdir holds, rebuilt: model config, training settings, task (with the saved vocab), params."""

    cfg: ModelConfig
    training: dict[str, Any]
    task: Any
    params: Any
    step: int


def prepare(workdir: str | Path) -> Path:
    """Create `workdir` for a new run; refuse one that already holds a run rather than overwrite it."""
    path = Path(workdir)
    if any((path / name).exists() for name in (CONFIG_FILE, CHECKPOINT_DIR, METRICS_FILE)):
        raise UserError(f"workdir {path} already holds a run; choose a new --workdir or delete it")
    if path.exists() and not path.is_dir():
        raise UserError(f"workdir {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _manager(path: Path, create: bool) -> ocp.CheckpointManager:
    return checkpoint.open_manager(path / CHECKPOINT_DIR, read_only=not create)


def _check_manifest(path: Path, which: str | int = "latest") -> int:
    """The step to load ("latest", "best" or a number), after checking every file the manifest lists for it is
    present and unchanged (see `training.checkpoint`)."""
    return checkpoint.select_step(path, which)


def _shape_mismatches(saved: Any, expected: Any) -> list[str]:
    """Differences between the checkpoint's parameter tree and the one config.json builds."""
    def flat(tree: Any) -> dict[str, tuple[int, ...]]:
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in leaves}

    have, want = flat(saved), flat(expected)
    out = [f"{k} missing from the checkpoint" for k in sorted(set(want) - set(have))]
    out += [f"{k} not in the model" for k in sorted(set(have) - set(want))]
    out += [f"{k} has shape {have[k]}, the model needs {want[k]}" for k in sorted(set(have) & set(want))
            if have[k] != want[k]]
    return out


def save_run(workdir: str | Path, cfg: ModelConfig, training: dict[str, Any], task: Any, state: TrainState) -> None:
    """Write config.json, vocab.json and a checkpoint of `state` at its step."""
    path = Path(workdir)
    config = {"model": cfg.to_dict(), "training": training, "data": task.settings()}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    vocab = {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()}
    (path / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if hasattr(task, "save_files"):  # text tasks keep their tokenizer (e.g. a SentencePiece model) with the model
        task.save_files(path)
    step = int(state.step)
    meta = {"step": step, "rng": np.asarray(state.rng).tolist()}
    ckpt = checkpoint.Checkpoints(path, keep=1, metric="heldout_loss", mode="min", use_async=False)
    ckpt.save(step, state, meta)
    ckpt.close()


def load_config(workdir: str | Path) -> tuple[ModelConfig, dict[str, Any], Any]:
    """(model config, training settings, task rebuilt with the saved vocab) from a workdir's JSON files."""
    path = Path(workdir)
    if not path.is_dir():
        raise UserError(f"workdir {path} does not exist")
    config = read_json(path / CONFIG_FILE)
    try:
        cfg = ModelConfig.from_dict(config["model"])
        task_settings = dict(config["data"] if "data" in config else config["task"])  # "task": before sections
        training = dict(config.get("training", {}))
    except (KeyError, TypeError) as e:
        raise UserError(f"{path / CONFIG_FILE} lacks {e}; the workdir is corrupt") from None
    task = build_task(task_settings.pop("name", ""), **task_settings)
    if hasattr(task, "load_files"):  # text tasks: tokenizers and vocabs come from the workdir, not from data
        task.load_files(path)
    vocabs = read_json(path / VOCAB_FILE)
    try:
        src, tgt = Vocab.from_dict(vocabs["src"]), Vocab.from_dict(vocabs["tgt"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{path / VOCAB_FILE} lacks {e}; the workdir is corrupt") from None
    if src != task.src_vocab or tgt != task.tgt_vocab:
        raise UserError(f"{path / VOCAB_FILE} does not match the {task.name} task's vocabulary")
    if (cfg.src_vocab_size, cfg.tgt_vocab_size) != (len(src), len(tgt)):
        raise UserError(
            f"{path / CONFIG_FILE}: vocab sizes {cfg.src_vocab_size}/{cfg.tgt_vocab_size} do not match "
            f"{path / VOCAB_FILE} ({len(src)}/{len(tgt)})"
        )
    return cfg, training, task


def load_run(workdir: str | Path, which: str | int = "latest") -> Run:
    """Rebuild config, task and a checkpoint's params ("latest", "best" by the validation metric, or a step
    number) from `workdir` alone."""
    path = Path(workdir)
    cfg, training, task = load_config(path)
    if not (path / CHECKPOINT_DIR).is_dir() or not (path / MANIFEST_FILE).exists():
        raise UserError(f"workdir {path} has no complete checkpoint; training did not finish")
    step = _check_manifest(path, which)
    model = build_model(cfg)
    # shapes only: eval_shape runs nothing; text tasks give a batch that needs no data
    sample = task.shape_batch() if hasattr(task, "shape_batch") else task.heldout_batch()
    abstract = jax.eval_shape(lambda: init_params(model, cfg, jax.random.key(0), sample))
    # onto this process's first device, whatever mesh the run was trained (and saved) on
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local), abstract)
    with _manager(path, create=False) as mngr:
        where = path / CHECKPOINT_DIR / str(step)
        try:
            saved = mngr.item_metadata(step)["params"]
        except (ValueError, KeyError, FileNotFoundError) as e:
            msg = str(e).split(" [tensorstore_spec")[0]
            raise UserError(f"checkpoint {where} is unreadable ({type(e).__name__}: {msg})") from None
        if saved is None:
            raise UserError(f"checkpoint {where} has no params")
        bad = _shape_mismatches(saved.tree, abstract)
        if bad:
            raise UserError(f"checkpoint {where} does not match config.json: {'; '.join(bad[:3])}")
        restored = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
    return Run(cfg=cfg, training=training, task=task, params=restored["params"], step=step)
