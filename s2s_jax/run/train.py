"""Defining a run and training it: preset + recipe + flags + `--set` -> RunConfig, then the loop on its workdir.

Two ways to call `train`:
- a new run (`define_run`): the preset's model config with vocab sizes and special ids from the task, the
  recipe, flags and `--set`s, in that order; if the workdir already holds a run, the two configs must match
  and training resumes (otherwise an error lists the differences);
- a saved run (`saved_run`): config.json defines everything and training resumes. Flags and `--set`s given
  then are still applied and checked against the saved config (so `--steps 500` on a 300-step run is an
  error, not silently ignored).

Validation during training decodes through the same `Translator` as `s2s-jax evaluate`, with the run's
`decoding` section (per-row length bound included) and, for BLEU, the same scoring against the held-out
text as read, so the checkpoint `--best-metric bleu` picks is the one `evaluate` reproduces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2s_jax import presets
from s2s_jax.config import ModelConfig
from s2s_jax.errors import ConfigError, UserError
from s2s_jax.run.config import DataConfig, DecodeOptions, OptimizerConfig, RunConfig, TrainConfig, recipe_for
from s2s_jax.run.overrides import model_overrides, split_overrides, typed_overrides
from s2s_jax.training.loop import TrainResult, Validate, check_can_train, train_loop

TASK_KEYS = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")


def config_for_task(preset: str, task: Any, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The preset's config with `overrides`, and vocab sizes and special ids taken from the task's vocabs."""
    overrides = dict(overrides or {})
    clash = sorted(set(overrides) & set(TASK_KEYS))
    if clash:
        raise ConfigError(f"{clash} come from the task's vocabulary and cannot be overridden")
    src, tgt = task.src_vocab, task.tgt_vocab
    data = dict(
        src_vocab_size=len(src), tgt_vocab_size=len(tgt), pad_id=tgt.pad_id, bos_id=tgt.bos_id, eos_id=tgt.eos_id
    )
    return presets.get(preset, **overrides, **data)


def task_from_settings(settings: Mapping[str, Any]) -> Any:
    """Rebuild a training task (with its data) from `task.settings()`."""
    from s2s_jax.data.tasks import TASKS, build_task

    settings = dict(settings)
    name = settings.pop("name", "")
    cls = TASKS.get(name)
    if cls is not None and hasattr(cls, "create"):  # text tasks read and tokenize their data
        return cls.create(**settings)
    return build_task(name, **settings)


def _apply(run: RunConfig, flags: Mapping[str, Mapping[str, Any]], sets: Mapping[str, Mapping[str, str]],
           sections: Sequence[str]) -> RunConfig:
    for section, values in flags.items():
        run = run.replace(section, **values)
    for section in sections:
        if sets.get(section):
            run = run.replace(section, **typed_overrides(run, section, sets[section]))
    return run


def define_run(preset: str, task: Any, *, recipe: str | None = None,
               flags: Mapping[str, Mapping[str, Any]] | None = None,
               sets: Sequence[str] = ()) -> tuple[RunConfig, Any]:
    """(run config, task) of a new run: defaults < recipe < `flags` ({section: {key: value}}) < `sets`
    (["section.key=value", ...]). `data.*` sets rebuild the task with those settings."""
    overrides = split_overrides(sets)
    if overrides.get("data"):
        base = RunConfig(model=ModelConfig(), data=DataConfig.of(task.settings()))
        task = task_from_settings({**task.settings(), **typed_overrides(base, "data", overrides["data"])})
    chosen = recipe_for(preset, recipe)
    # the model: preset < recipe < --set (the other sections layer the same way below)
    cfg = config_for_task(preset, task, {**chosen.get("model", {}), **model_overrides(overrides.get("model", {}))})
    run = RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=preset)
    for section, values in chosen.items():
        if section != "model":
            run = run.replace(section, **values)
    return _apply(run, flags or {}, overrides, ("optimizer", "training", "decoding")), task


def saved_run(workdir: str | Path, *, flags: Mapping[str, Mapping[str, Any]] | None = None,
              sets: Sequence[str] = ()) -> tuple[RunConfig, Any]:
    """(run config, task) of the run saved in `workdir`, with `flags` and `sets` applied (a difference that
    matters is refused when the workdir is opened)."""
    from s2s_jax.run.workdir import holds_run, load_run_config

    if not holds_run(workdir):
        raise UserError(f"--preset is required for a new run (`s2s-jax presets` lists them); {workdir} "
                        "holds no run to resume")
    run = load_run_config(workdir)
    task = task_from_settings(run.data.to_dict())
    sections = ("model", "data", "optimizer", "training", "decoding")
    return _apply(run, flags or {}, split_overrides(sets), sections), task


def decode_heldout(cfg: ModelConfig, params: Any, task: Any, opts: DecodeOptions, chunk: int,
                   heldout: dict[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """(output ids per held-out row, through eos; per-row exact-match hits [N]) decoded by `Translator`;
    `heldout`: the task's held-out batch, when the caller already has it."""
    from s2s_jax.run.translate import Translator
    from s2s_jax.training.metrics import exact_match

    heldout = task.heldout_batch() if heldout is None else heldout
    ids, _ = Translator(cfg, params, task, chunk).decode_ids(heldout["src"], heldout["src_lengths"], opts)
    tokens = np.full((len(ids), max(1, max(len(row) for row in ids))), -1, np.int32)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    lengths = np.array([len(row) for row in ids], np.int32)
    return ids, exact_match(tokens, lengths, heldout["tgt_out"], heldout["tgt_lengths"])


def make_validate(run: RunConfig, task: Any) -> Validate:
    """`validate(params)`: exact match of the held-out set, and its BLEU when the run selects by BLEU, decoded
    as `evaluate` decodes (`Translator` with the run's decoding options)."""
    from s2s_jax.run.evaluate import corpus_scores, reference_lowercase

    heldout = task.heldout_batch()

    def validate(params: Any) -> dict[str, float]:
        ids, hits = decode_heldout(run.model, params, task, run.decoding, run.training.eval_chunk, heldout)
        out = {"exact_match": float(hits.mean())}
        if run.training.best_metric == "bleu":
            hyps = [task.decode_output(row) for row in ids]
            pairs = getattr(task, "heldout_pairs", None)  # the text as read; else the held-out ids decoded
            refs = [t for _, t in pairs] if pairs is not None else [task.decode_output(r) for r in heldout["tgt_out"]]
            scores = corpus_scores(hyps, refs, pretokenized=bool(getattr(task, "pretokenized", False)),
                                   lowercase=reference_lowercase(task))
            out["bleu"] = float(scores["bleu"])
        return out

    return validate


def train_run(run: RunConfig, task: Any, workdir: str | Path | None = None, log: Callable[[str], None] = print,
              *, progress: bool = False, mesh: Any = None) -> TrainResult:
    """Train `run` on `task`; with `workdir`, set it up (or check it holds this run) and checkpoint there. The
    workdir is this process's for the whole run: a second trainer is refused with this one's PID."""
    from s2s_jax.training import sharding

    mesh = mesh or sharding.make_mesh()
    check_can_train(run.model, task, run.training, mesh)  # before the workdir is created
    if workdir is None:
        return _loop(run, task, None, log, progress, mesh)
    from s2s_jax.run.workdir import open_for_training, owning

    with owning(workdir, log) as primary:
        path, _ = open_for_training(workdir, run, task, primary)
        sharding.barrier("s2s_jax.workdir")
        return _loop(run, task, path, log, progress, mesh)


def _loop(run: RunConfig, task: Any, path: Path | None, log: Callable[[str], None], progress: bool,
          mesh: Any) -> TrainResult:
    return train_loop(run.model, task, run.optimizer, run.training, path, log, validate=make_validate(run, task),
                      saved_config=run.to_dict(), progress=progress, mesh=mesh)


def train(cfg: ModelConfig, task: Any, tc: TrainConfig, workdir: str | Path | None = None,
          log: Callable[[str], None] = print, *, optimizer: OptimizerConfig | None = None,
          decoding: DecodeOptions | None = None, preset: str = "", progress: bool = False) -> TrainResult:
    """Train `cfg` on `task` for `tc.steps` steps (a RunConfig made of these sections); see `train_run`."""
    run = RunConfig(model=cfg, data=DataConfig.of(task.settings()), optimizer=optimizer or OptimizerConfig(),
                    training=tc, decoding=decoding or DecodeOptions(), preset=preset)
    return train_run(run, task, workdir, log, progress=progress)
