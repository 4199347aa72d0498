"""An imported model as a normal workdir, written by the run writer (`save_run`) that `train` uses.

The workdir holds config.json (preset `marian` or `convs2s`, the imported model
config), the model's own tokenizers and vocabularies (vocab.json, tokenizer.json and its SentencePiece
files), and a step-0 checkpoint: the imported params with the optimizer state of the run's optimizer,
exactly what `train` would start from. So `translate`, `evaluate` and `export` read it like any run, and
`s2s-jax train --workdir W` fine-tunes it from there (and resumes exactly after a kill, like every run).

Training needs data: with `data` the task is the translation task of that dataset, tokenized with the
model's tokenizers (`TranslationTask(vocab_dir=W)`, which reads the files written here first) instead of
newly fitted ones. The run's training and decoding settings are given at import (`flags`, `--set`), as
they are when `train` defines a run; the model's sizes come from the checkpoint and only its dropout
rates may be set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.data.translation import TranslationTask
from s2s_jax.errors import UserError
from s2s_jax.importers import CheckpointError, Imported
from s2s_jax.run.config import DataConfig, DecodeOptions, RunConfig, recipe_for
from s2s_jax.run.overrides import model_overrides, split_overrides, typed_overrides
from s2s_jax.run.workdir import VOCAB_FILE, holds_run, save_run, vocab_json
from s2s_jax.training.logs import write_atomic

# model keys a fine-tuning run may change: the rest is fixed by the checkpoint's weights
TUNABLE = ("dropout", "attention_dropout", "activation_dropout")


def _task(imported: Imported, settings: Mapping[str, Any]) -> TranslationTask:
    task = TranslationTask(**settings)
    task.src_tok, task.tgt_tok = imported.src_tok, imported.tgt_tok
    task.src_vocab, task.tgt_vocab = imported.src_vocab, imported.tgt_vocab
    return task


def data_settings(texts: Mapping[str, str], given: Mapping[str, Any]) -> dict[str, Any]:
    """TranslationTask settings (no dataset): `given` values, then `--set data.KEY=VALUE` texts typed like the
    task's defaults."""
    base = RunConfig(model=ModelConfig(), data=DataConfig.of(TranslationTask().settings()))
    values = {**given, **(typed_overrides(base, "data", texts) if texts else {})}
    unknown = sorted(set(values) - set(TranslationTask().settings()))
    if unknown:
        raise ConfigError(f"unknown data setting(s) {unknown}")
    return {k: v for k, v in values.items() if k not in ("name", "data", "vocab_dir")}


def define_imported_run(imported: Imported, task: Any, flags: Mapping[str, Mapping[str, Any]],
                        sets: Mapping[str, Mapping[str, str]]) -> RunConfig:
    """The RunConfig of an imported model: its config (dropout rates from `sets` aside), the preset's recipe,
    the origin's decoding defaults, then `flags` ({section: {key: value}}) and the optimizer / training /
    decoding `sets`."""
    model = dict(sets.get("model", {}))
    fixed = sorted(set(model) - set(TUNABLE))
    if fixed:
        raise ConfigError(f"--set model.{fixed[0]}: the imported checkpoint fixes the model; only "
                          f"{', '.join(TUNABLE)} may be set")
    cfg = imported.cfg.replace(**model_overrides(model))
    run = RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=imported.preset,
                    decoding=DecodeOptions().replace(**imported.decoding))
    for section, values in recipe_for(imported.preset, None).items():
        run = run.replace(section, **values)
    for section, values in flags.items():
        run = run.replace(section, **values)
    for section in ("optimizer", "training", "decoding"):
        if sets.get(section):
            run = run.replace(section, **typed_overrides(run, section, sets[section]))
    return run


def check_params(cfg: ModelConfig, params: Any, task: Any, source: str) -> None:
    """The converted params have exactly the tree and shapes the model of `cfg` builds (else CheckpointError)."""
    import jax

    from s2s_jax.models import build_model
    from s2s_jax.training.state import init_params

    expected = jax.eval_shape(lambda: init_params(build_model(cfg), cfg, jax.random.key(0), task.shape_batch()))
    have = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            raise CheckpointError(f"{source}: parameter {key} is {have.get(key)} after conversion, the "
                                  f"{cfg.family} model needs {want.get(key)}")


def initial_state(run: RunConfig, params: Any) -> Any:
    """The step-0 train state of `run` holding `params`: its optimizer's fresh state, the dropout key
    `create_train_state` draws from the run's seed (without initializing params only to replace them)."""
    import jax
    import jax.numpy as jnp

    from s2s_jax.training.schedules import make_optimizer_from
    from s2s_jax.training.state import TrainState

    tx, _ = make_optimizer_from(run.optimizer, run.training.steps)
    _, dropout_key = jax.random.split(jax.random.key(run.training.seed))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.key_data(dropout_key))


def write_imported(workdir: str | Path, imported: Imported, params: Any, *, data: str = "",
                   settings: Mapping[str, Any] | None = None, flags: Mapping[str, Mapping[str, Any]] | None = None,
                   sets: Sequence[str] = ()) -> Path:
    """Write `imported` (with its Flax `params`) as a new workdir. `data`: the dataset spec fine-tuning reads;
    `settings`: other TranslationTask settings (buckets, max_len, len_a, ...); `flags`: run-config values as
    `train`'s flags give them; `sets`: `--set` items (model dropout rates, data, optimizer, training, decoding)."""
    path = Path(workdir)
    if holds_run(path):
        raise UserError(f"workdir {path} already holds a run; choose a new --workdir or delete it")
    split = split_overrides(sets)
    settings = data_settings(split.get("data", {}), settings or {})
    task = _task(imported, settings)
    run = define_imported_run(imported, task, flags or {}, split)  # every setting checked before a file is written
    check_params(run.model, params, task, imported.source)
    if data:  # fine-tuning data, read with the model's own tokenizers from the files written here first
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / VOCAB_FILE, json.dumps(vocab_json(task), ensure_ascii=False, indent=1) + "\n")
        task.save_files(path)
        task = TranslationTask.create(data, vocab_dir=str(path), **settings)
        run = define_imported_run(imported, task, flags or {}, split)
    return save_run(path, run, task, initial_state(run, params))
