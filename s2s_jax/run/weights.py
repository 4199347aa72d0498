"""Which weights of a workdir a reader uses, and how they are read: a checkpoint's params, its EMA of the params,
or the average of several checkpoints (written here, by `s2s-jax average`).

    --checkpoint best | latest | STEP   the params of that step (best: by the run's validation metric)
    --checkpoint ema | ema:STEP         the exponential moving average of the params kept by `--ema-decay`
                                        (of the latest step, or of STEP), read from that step's optimizer state
    --checkpoint averaged               the parameter average that `s2s-jax average` wrote (fairseq's
                                        average_checkpoints.py): `averaged/` beside `checkpoints/`

Every read happens under `locks.reading_checkpoints`, so a live run cannot delete a step while it is read,
and goes through orbax's `StandardCheckpointHandler` alone (no CheckpointManager: it would warn about
read-only directories and might clean up a live run's temporary files). `averaged/` is written to a
temporary directory and renamed into place, with a manifest of its files checked on every read, so a
reader sees the old average, the new one, or a clear error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from s2s_jax.errors import UserError
from s2s_jax.training.checkpoint import CHECKPOINT_DIR, file_manifest, read_manifest, select_step, short_error
from s2s_jax.training.locks import reading_checkpoints

AVERAGED_DIR = "averaged"
AVERAGED_FILE = "averaged.json"


def abstract_params(config: Any, task: Any) -> Any:
    """Shapes and dtypes of the run's params, placed on this process's first device (eval_shape runs nothing)."""
    import jax

    from s2s_jax.models import build_model
    from s2s_jax.training.state import init_params

    cfg = config.model
    model = build_model(cfg)
    sample = task.shape_batch() if hasattr(task, "shape_batch") else task.heldout_batch()  # text: no data read
    abstract = jax.eval_shape(lambda: init_params(model, cfg, jax.random.key(0), sample))
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local), abstract)


def read_weights(path: Path, config: Any, task: Any, which: str | int) -> tuple[Any, int]:
    """(params, step) that `which` names (see the module docstring)."""
    abstract = abstract_params(config, task)
    if which == "averaged":
        return _read_averaged(path, abstract)
    ema = isinstance(which, str) and (which == "ema" or which.startswith("ema:"))
    step_of = ("latest" if which == "ema" else which.split(":", 1)[1]) if ema else which
    with reading_checkpoints(path / CHECKPOINT_DIR):
        step = select_step(path, step_of)  # every file the manifest lists for it is present and unchanged
        step_dir = path / CHECKPOINT_DIR / str(step)
        if not ema:
            return read_item(step_dir, "params", abstract), step
        return _read_ema(step_dir, config, abstract), step


def read_item(step_dir: Path, item: str, abstract: Any, *, by_name: bool = True) -> Any:
    """One item of a checkpoint step, restored into `abstract`'s shapes (a mismatch names the parameters;
    `by_name=False` compares the shapes in order, for optimizer states, whose NamedTuples orbax saves as dicts)."""
    import orbax.checkpoint as ocp
    from etils import epath

    handler = ocp.StandardCheckpointHandler()
    where = epath.Path(step_dir.absolute() / item)
    try:
        try:
            saved = handler.metadata(where)
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"checkpoint {step_dir} is unreadable ({short_error(e)})") from None
        saved = saved.tree if hasattr(saved, "tree") else saved
        bad = _shape_mismatches(saved, abstract) if by_name else _shapes_in_order(saved, abstract)
        if bad:
            raise UserError(f"checkpoint {step_dir} does not match config.json: {'; '.join(bad[:3])}")
        try:
            return handler.restore(where, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"checkpoint {step_dir} is unreadable ({short_error(e)})") from None
    finally:
        handler.close()


def _read_ema(step_dir: Path, config: Any, abstract: Any) -> Any:
    """The params EMA inside a step's optimizer state (see `schedules.params_ema`)."""
    import jax

    from s2s_jax.training.schedules import ema_params, make_optimizer_from

    if not config.optimizer.ema_decay:
        raise UserError(f"{step_dir.parent.parent} was trained without --ema-decay: it has no EMA weights; use "
                        "--checkpoint best, latest or a step")
    tx, _ = make_optimizer_from(config.optimizer, config.training.steps)
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    opt_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local),
                                jax.eval_shape(tx.init, abstract))
    return ema_params(read_item(step_dir, "opt_state", opt_abstract, by_name=False))


# ---- averaging ---------------------------------------------------------------------------------------------------
def average_checkpoints(path: str | Path, config: Any, task: Any, *, last: int | None = None,
                        steps: list[int] | None = None) -> dict[str, Any]:
    """Average the params of the last `last` kept checkpoints (or of `steps`) into `path/averaged`; returns what
    averaged.json records. Accumulated in float64, stored in each parameter's own dtype."""
    path = Path(path)
    abstract = abstract_params(config, task)
    with reading_checkpoints(path / CHECKPOINT_DIR):
        kept = sorted(int(s) for s in read_manifest(path)["steps"])
        chosen = sorted(set(steps)) if steps else kept[-last:] if last else kept
        if not chosen or (last is not None and last < 1):
            raise UserError("nothing to average: give --last N >= 1 or --steps A,B,...")
        missing = [s for s in chosen if s not in kept]
        if missing:
            raise UserError(f"{path} keeps checkpoints {kept}, not {missing}; train with a larger --keep to "
                            "average more")
        total = None
        for step in chosen:
            select_step(path, step)  # verified against the manifest
            params = read_item(path / CHECKPOINT_DIR / str(step), "params", abstract)
            leaves = [np.asarray(x, np.float64) for x in _leaves(params)]
            total = leaves if total is None else [a + b for a, b in zip(total, leaves, strict=True)]
    import jax

    treedef = jax.tree.structure(abstract)
    averaged = jax.tree.unflatten(treedef, [np.asarray(t / len(chosen), a.dtype)
                                            for t, a in zip(total, _leaves(abstract), strict=True)])
    return _write_averaged(path, averaged, chosen)


def _leaves(tree: Any) -> list[Any]:
    import jax

    return jax.tree.leaves(tree)


def _write_averaged(path: Path, params: Any, steps: list[int]) -> dict[str, Any]:
    """Write into a temporary directory, then swap it in: readers see a whole average or none."""
    import orbax.checkpoint as ocp
    from etils import epath

    tmp = path / f"{AVERAGED_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as writer:  # synchronous, finalized when it returns
        writer.save(epath.Path((tmp / "params").absolute()), args=ocp.args.StandardSave(params))
    record = {"steps": steps, "step": max(steps), "files": file_manifest(tmp / "params")}
    (tmp / AVERAGED_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    final, old = path / AVERAGED_DIR, path / f"{AVERAGED_DIR}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return record


def _read_averaged(path: Path, abstract: Any) -> tuple[Any, int]:
    where = path / AVERAGED_DIR
    record_path = where / AVERAGED_FILE
    if not record_path.exists():
        raise UserError(f"{path} has no averaged checkpoint: run `s2s-jax average --workdir {path} --last N` first")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        listed, step = dict(record["files"]), int(record["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{record_path} is malformed ({e}); average again") from None
    have = file_manifest(where / "params")
    changed = [n for n, v in listed.items() if have.get(n) != v]
    if changed:
        raise UserError(f"averaged checkpoint {where} is corrupt: {changed[0]} is missing or changed; average again")
    return read_item(where, "params", abstract), step


def _shape_mismatches(saved: Any, expected: Any) -> list[str]:
    """Differences between the checkpoint's parameter tree and the one config.json builds."""
    import jax

    def flat(tree: Any) -> dict[str, tuple[int, ...]]:
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in leaves}

    have, want = flat(saved), flat(expected)
    out = [f"{k} missing from the checkpoint" for k in sorted(set(want) - set(have))]
    out += [f"{k} not in the model" for k in sorted(set(have) - set(want))]
    out += [f"{k} has shape {have[k]}, the model needs {want[k]}" for k in sorted(set(have) & set(want))
            if have[k] != want[k]]
    return out


def _shapes_in_order(saved: Any, expected: Any) -> list[str]:
    import jax

    have = [tuple(x.shape) for x in jax.tree.leaves(saved)]
    want = [tuple(x.shape) for x in jax.tree.leaves(expected)]
    return [] if have == want else [f"{len(have)} arrays of shapes {have[:3]}..., the run's optimizer needs "
                                    f"{len(want)} of {want[:3]}..."]
