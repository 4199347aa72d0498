"""Checkpoints of a training run: orbax `CheckpointManager` items plus a manifest of verified steps.

Each step directory `checkpoints/<step>/` holds three items:
    params, opt_state   StandardCheckpointHandler (tensorstore; restored straight into their shardings)
    meta                JSON: step, dropout RNG key data, data position, early-stopping state, the run config
                        and the vocab (so a checkpoint copied on its own still says what it is)

Atomicity: orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it
when every item is written, so a step directory is either complete or absent;
leftover tmp directories are deleted when the manager opens. On top of that,
`manifest.json` lists the size and sha256 of every file of every finished step
(written atomically with os.replace after orbax finishes): resuming and loading
use only listed steps, so a checkpoint that orbax had not finalized, or that
finished but never made it into the manifest, is never picked up, and an edited
or truncated file is reported as corruption instead of failing inside tensorstore.

Saves are asynchronous (training continues while the files are written); the
manifest entry of a step is added when its write is known to be finished (at the
next save, or `close`).

Kept: the latest `keep` steps and the best one by the validation metric. The policy
is applied here, from the manifest, not by orbax: the manifest records each step's
metrics, so the best step survives any number of reopens (orbax's own best-N policy
knows only the metrics of steps saved by the same process). A step leaves the
manifest first and its directory is deleted after, under `locks.deleting_checkpoints`,
so a reader that chose a step (under `locks.reading_checkpoints`) can always finish
reading it; a deletion a reader holds off is retried at the next save.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from s2s_jax.errors import UserError
from s2s_jax.training.locks import deleting_checkpoints
from s2s_jax.training.logs import read_json

CHECKPOINT_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
# Test-only fault injection: SIGKILL this process while the checkpoint of this step is being written (after its
# meta item, before orbax finalizes the step), to check that an interrupted save is never picked up.
KILL_DURING_SAVE = "S2S_JAX_TEST_KILL_DURING_SAVE"


class _MetaHandler(ocp.JsonCheckpointHandler):
    """The JSON item, with the fault-injection hook above."""

    async def _save_fn(self, x: Any, directory: Any) -> None:
        await super()._save_fn(x, directory)
        if os.environ.get(KILL_DURING_SAVE) == str(x.get("step")):
            os.kill(os.getpid(), signal.SIGKILL)


@ocp.args.register_with_handler(_MetaHandler, for_save=True)
@dataclasses.dataclass
class MetaSave(ocp.args.JsonSave):
    """Save args of the meta item (orbax picks a handler by the args' class)."""


@ocp.args.register_with_handler(_MetaHandler, for_restore=True)
@dataclasses.dataclass
class MetaRestore(ocp.args.JsonRestore):
    """Restore args of the meta item."""


def _handlers() -> dict[str, Any]:
    return {"params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
            "meta": _MetaHandler()}


def open_manager(directory: Path, *, use_async: bool = False) -> ocp.CheckpointManager:
    """An orbax manager that writes steps into `directory` and never deletes one (`Checkpoints` decides)."""
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=use_async,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=_handlers())


def best_step(steps: dict[str, Any], metric: str, mode: str) -> int | None:
    """The step with the best `metric` among `steps` ({str(step): {"metrics": ...}}); of equally good steps the
    earliest, the one early stopping counts from. None when no step has the metric."""
    sign = 1 if mode == "min" else -1
    scored = [(sign * v["metrics"][metric], int(k)) for k, v in steps.items() if (v.get("metrics") or {}).get(metric)
              is not None]
    return min(scored)[1] if scored else None


def kept_steps(steps: dict[str, Any], keep: int, metric: str, mode: str) -> set[str]:
    """The latest `keep` steps and the best one."""
    latest = sorted(steps, key=int)[-keep:] if keep > 0 else []
    best = best_step(steps, metric, mode)
    return set(latest) | ({str(best)} if best is not None else set())


# ---- manifest ----------------------------------------------------------------------------------------------------
def file_manifest(step_dir: Path) -> dict[str, list[Any]]:
    """{relative path: [size, sha256]} for every file under a checkpoint step."""
    out = {}
    for f in sorted(step_dir.rglob("*")):
        if f.is_file():
            out[f.relative_to(step_dir).as_posix()] = [f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest()]
    return out


def read_manifest(workdir: Path) -> dict[str, Any]:
    """The manifest as {"latest", "best", "metric", "mode", "steps": {str(step): {"files", "metrics"}}}; the
    one-step format of earlier versions ({"step", "files"}) is read too."""
    path = workdir / MANIFEST_FILE
    m = read_json(path, f"workdir {workdir} has no complete checkpoint ({MANIFEST_FILE} is missing)")
    try:
        if "steps" not in m:
            m = {"latest": int(m["step"]), "best": None, "steps": {str(int(m["step"])): {"files": m["files"]}}}
        m["latest"] = None if m.get("latest") is None else int(m["latest"])
        m["steps"] = {str(int(k)): v for k, v in dict(m["steps"]).items()}
        for entry in m["steps"].values():
            dict(entry["files"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path} lacks {e}; the workdir is corrupt") from None
    return m


def write_manifest(workdir: Path, manifest: dict[str, Any]) -> None:
    """Atomic: a reader sees the old manifest or the new one, never half of one."""
    tmp = workdir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, workdir / MANIFEST_FILE)


def verify_step(workdir: Path, manifest: dict[str, Any], step: int) -> None:
    """Every file the manifest lists for `step` is present and unchanged (else a UserError naming it)."""
    step_dir = workdir / CHECKPOINT_DIR / str(step)
    entry = manifest["steps"].get(str(step))
    if entry is None:
        raise UserError(f"checkpoint step {step} is not in {workdir / MANIFEST_FILE}")
    if not step_dir.is_dir():
        raise UserError(f"checkpoint {step_dir} is missing; the workdir is incomplete")
    have = file_manifest(step_dir)
    for name, listed in entry["files"].items():
        if name not in have:
            raise UserError(f"checkpoint {step_dir} is corrupt: {name} is missing")
        if have[name] != listed:
            raise UserError(f"checkpoint {step_dir} is corrupt: {name} changed since it was saved")


def select_step(workdir: Path, which: str | int = "latest") -> int:
    """The verified step to load: "latest", "best" (latest when no step has metrics) or a step number."""
    m = read_manifest(workdir)
    if which == "best":
        step = m.get("best") if m.get("best") is not None else m["latest"]
    elif which == "latest":
        step = m["latest"]
    else:
        step = int(which)
    if step is None:
        raise UserError(f"workdir {workdir} has no complete checkpoint yet")
    if str(step) not in m["steps"]:
        kept = ", ".join(sorted(m["steps"], key=int)) or "none"
        raise UserError(f"workdir {workdir} has no checkpoint of step {step}; kept steps: {kept}")
    verify_step(workdir, m, int(step))
    return int(step)


# ---- the run's checkpointer ---------------------------------------------------------------------------------------
class Checkpoints:
    """Saving (async) and restoring a run's train state; every process calls `save`, process 0 writes the
    manifest and deletes the steps it no longer keeps."""

    def __init__(self, workdir: Path, *, keep: int, metric: str, mode: str, use_async: bool = True) -> None:
        self.workdir, self.keep, self.metric, self.mode = Path(workdir), keep, metric, mode
        self.root = self.workdir / CHECKPOINT_DIR
        self.primary = jax.process_index() == 0
        self.manifest = self._existing_manifest()
        if self.primary:
            self._delete(self._unlisted(), wait=True)
        self.mngr = open_manager(self.root, use_async=use_async)
        self._pending: dict[int, dict[str, float] | None] = {}
        self.last_saved: int | None = self.latest

    def _existing_manifest(self) -> dict[str, Any]:
        if (self.workdir / MANIFEST_FILE).exists():
            m = read_manifest(self.workdir)
        else:
            m = {"latest": None, "best": None, "steps": {}}
        return {**m, "metric": self.metric, "mode": self.mode}

    def _unlisted(self) -> list[str]:
        """Step directories the manifest does not list: finalized by orbax after the last manifest write (a crash
        in between, not trusted, so the resumed run saves those steps again), or dropped from the manifest while a
        reader held their deletion off."""
        if not self.root.is_dir():
            return []
        return [d.name for d in self.root.iterdir() if d.is_dir() and d.name.isdigit()
                and d.name not in self.manifest["steps"]]

    def _delete(self, names: list[str], *, wait: bool = False) -> None:
        """Delete unlisted step directories unless a reader is reading (then they wait for the next save)."""
        if not names:
            return
        with deleting_checkpoints(self.root, wait=wait) as free:
            if free:
                for name in names:
                    shutil.rmtree(self.root / name, ignore_errors=True)

    @property
    def latest(self) -> int | None:
        return self.manifest["latest"]

    def restore(self, step: int, target: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(params, opt_state, meta) of `step`, the arrays restored into the shapes, dtypes and shardings of
        `target` (a TrainState)."""
        if self.primary:
            verify_step(self.workdir, self.manifest, step)

        def abstract(tree: Any) -> Any:
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)

        try:
            out = self.mngr.restore(step, args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract(target.params)),
                opt_state=ocp.args.StandardRestore(abstract(target.opt_state)),
                meta=MetaRestore(),
            ))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"checkpoint {self.root / str(step)} cannot be restored into this "
                            f"run ({short_error(e)})") from None
        return out["params"], out["opt_state"], dict(out["meta"])

    def save(self, step: int, state: Any, meta: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Start writing `state` at `step` (returns once the arrays are copied off the devices). `metrics`: the
        evaluation of this step, if there was one (the manifest keeps its `metric` for the keep-best policy)."""
        self._finish_pending()
        self.mngr.save(step, force=True, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            opt_state=ocp.args.StandardSave(state.opt_state),
            meta=MetaSave(meta),
        ))
        self._pending[step] = None if metrics is None or self.metric not in metrics else {
            self.metric: float(metrics[self.metric])}
        self.last_saved = step

    def _finish_pending(self, wait: bool = False) -> None:
        """List the finished saves in the manifest, drop the steps the policy no longer keeps from it, then delete
        their directories (and any a reader held off before)."""
        self.mngr.wait_until_finished()
        if self._pending and self.primary:
            steps = dict(self.manifest["steps"])
            for step, metrics in self._pending.items():
                steps[str(step)] = {"files": file_manifest(self.root / str(step)), "metrics": metrics}
            kept = kept_steps(steps, self.keep, self.metric, self.mode)
            steps = {k: v for k, v in steps.items() if k in kept}
            self.manifest = {**self.manifest, "latest": max(int(k) for k in steps),
                             "best": best_step(steps, self.metric, self.mode), "steps": steps}
            write_manifest(self.workdir, self.manifest)
        self._pending = {}
        if self.primary:
            self._delete(self._unlisted(), wait=wait)

    def close(self) -> None:
        """Wait for the last save, record it in the manifest, and delete what is no longer kept."""
        self._finish_pending(wait=True)
        self.mngr.close()


def short_error(e: Exception) -> str:
    """An orbax / tensorstore error in one line, without its long spec dump."""
    return f"{type(e).__name__}: {str(e).split(' [tensorstore_spec')[0][:300]}".replace("\n", " ")


def rng_to_json(rng: Any) -> list[int]:
    return np.asarray(jax.device_get(rng)).astype(np.uint32).tolist()
