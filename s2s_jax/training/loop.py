"""The training loop: jitted steps, held-out evaluation, checkpoints and exact resume, in one small loop.

nanoGPT style: one Python loop over steps; batches are a pure function of (task
seed, step), so a checkpoint's data position is its step; everything heavy is in
the jitted step. The pieces live next door: the optimizer and loop settings
(`options`), optimizer and schedules (`schedules`), mesh and data parallelism
(`sharding`), checkpoints and resuming (`checkpoint`), reports (`logs`). What a
run is and where it lives (config.json, the workdir) is `s2s_jax.run`'s, which
calls this loop.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from s2s_jax.config import ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.models import build_model, target_limit
from s2s_jax.training import sharding
from s2s_jax.training.logs import RunLog
from s2s_jax.training.metrics import sum_in_chunks
from s2s_jax.training.options import BEST_METRICS, OptimizerConfig, TrainConfig
from s2s_jax.training.schedules import make_optimizer_from
from s2s_jax.training.state import TrainState, create_train_state
from s2s_jax.training.steps import make_eval_step, make_train_step
from s2s_jax.training.stopping import Budget, EarlyStop, Interrupts

__all__ = ["TrainResult", "Validate", "check_can_train", "checkpoint_meta", "train_loop"]

# params -> {"exact_match": ..., maybe "bleu": ...}: the held-out decoding metrics, computed by the caller
# (s2s_jax.run.train decodes through the same translation path as `s2s-jax evaluate`).
Validate = Callable[[Any], dict[str, float]]


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    exact_match: float
    history: list[dict[str, float]]
    seconds: float
    # why it ended before tc.steps: "minutes", "early stopping", "interrupted by SIGINT" (or SIGTERM); "done": it
    # was resumed already finished
    stopped: str = ""
    train_log: list[dict[str, float]] = dataclasses.field(default_factory=list)  # this call's train.jsonl records
    # (step, started, ended) of this call's held-out evaluations, in seconds from the start of the run's clock
    evaluations: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)


def train_loop(
    cfg: ModelConfig, task: Any, optimizer: OptimizerConfig, tc: TrainConfig, path: Path | None = None,
    log: Callable[[str], None] = print, *, validate: Validate | None = None, saved_config: dict[str, Any] | None = None,
    progress: bool = False, mesh: Mesh | None = None,
) -> TrainResult:
    """The loop. `path`: a workdir already set up for this run (`s2s_jax.run.workdir.open_for_training`); what it
    holds is resumed from its latest checkpoint, exactly: params, optimizer state, step, dropout RNG, data position
    and early-stopping state all come from the checkpoint. `validate(params)` gives the held-out decoding metrics
    at each evaluation (the loop adds the teacher-forced loss); `saved_config` is the run config stored in each
    checkpoint's meta. mesh: the devices to train on (default: a `data` mesh over all devices of all processes).
    The caller has run `check_can_train` first, before it set up the workdir."""
    begin = time.perf_counter()  # --minutes counts from here: set-up and compilation are part of the run
    mesh = mesh or sharding.make_mesh()
    primary = sharding.is_primary()
    ckpt = None
    if path is not None:
        from s2s_jax.training.checkpoint import Checkpoints  # orbax is imported only when a run is saved

        ckpt = Checkpoints(path, keep=tc.keep, metric=tc.best_metric, mode=BEST_METRICS[tc.best_metric])
    model = build_model(cfg)
    tx, schedule = make_optimizer_from(optimizer, tc.steps)
    batching = tc.batching(mesh.size)  # batch_size rows, or --max-tokens per bucket width
    state = create_train_state(model, cfg, tx, tc.seed, task.train_batch(0, batching))
    state_sh = sharding.state_sharding(state, mesh, tc.shard_params)
    state = sharding.place(state, state_sh)
    stopper = EarlyStop(tc.best_metric, tc.patience)
    start = 0
    if ckpt is not None and ckpt.latest is not None:
        state, start = _restore(ckpt, state, state_sh, stopper, task, batching)
    runlog = RunLog(path, start_step=start, total_steps=tc.steps, primary=primary, progress=progress, log=log)
    batch_sh = sharding.batch_sharding(mesh)
    train_step = make_train_step(model, tx, optimizer.label_smoothing, accum_steps=tc.grad_accum,
                                 compute_dtype=jnp.bfloat16 if tc.precision == "bf16" else None,
                                 shardings=(state_sh, batch_sh, sharding.replicated(mesh)))
    eval_step = make_eval_step(model, optimizer.label_smoothing)
    heldout = task.heldout_batch()
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    name = f"{cfg.family}/{cfg.cell}" if cfg.recurrent else cfg.family  # the cell names only an RNN
    runlog.line(f"model {name} emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers}: "
                f"{n_params:,} parameters; task {task.settings()}; {tc.steps} steps of batch {batching} "
                f"on {mesh.size} device(s) in {jax.process_count()} process(es)")
    if start:
        runlog.line(f"resumed {path} from its checkpoint of step {start}")

    budget = Budget(tc.minutes, begin)
    meter = _Meter(start)
    em = runlog.history[-1].get("exact_match", 0.0) if runlog.history else 0.0
    stopped = "done" if start >= tc.steps else ""
    if stopped:
        runlog.line(f"nothing to do: {path} is already trained to step {start}")
    done = start  # the last step whose update is in `state`
    single, signalled = jax.process_count() == 1, False
    evaluations: list[tuple[int, float, float]] = []
    with Interrupts() as interrupts:
        try:
            for step in range(start + 1, tc.steps + 1):
                if single and interrupts.signum is not None:  # it came during the last evaluation or save
                    break
                state, metrics = train_step(state, sharding.global_batch(task.train_batch(step, batching),
                                                                         batch_sh))
                done = step
                meter.pending.append(metrics)
                runlog.advance(1)
                if budget.active:  # the clock counts finished steps, not queued ones
                    jax.block_until_ready(metrics["loss"])
                    budget.step_done(time.perf_counter())
                # wall-clock and signal decisions: process 0's, on every process (each log step when several)
                decide = single or step % tc.log_every == 0
                now = time.perf_counter()
                timeout = decide and budget.active and sharding.agree(budget.exhausted(now))
                probe = decide and not timeout and sharding.agree(budget.wants_probe(now))
                signalled = decide and sharding.agree(interrupts.signum is not None)
                last = step == tc.steps or timeout or signalled
                evaluate_now = (bool(tc.eval_every and step % tc.eval_every == 0) or last or probe) and not signalled
                periodic = bool(tc.checkpoint_every and step % tc.checkpoint_every == 0)
                save_now = ckpt is not None and (evaluate_now or periodic or signalled)
                if step % tc.log_every == 0 or last:
                    _report(runlog, meter, step, tc, schedule, ckpt)
                elif save_now:
                    _check_finite(jax.device_get(meter.pending), meter.step, ckpt)  # only finite states are saved
                record, stop_early = None, False
                if evaluate_now:
                    tick = time.perf_counter()
                    params = sharding.to_host(state.params)
                    try:
                        ev = sum_in_chunks(eval_step, params, heldout, tc.eval_chunk)
                        record = {"step": step, **(validate(params) if validate else {}),
                                  "heldout_loss": ev["loss_sum"] / max(ev["tokens"], 1.0)}
                    except Exception:  # a failing evaluation must not cost the steps trained since the last save
                        _save_before_failing(step, state, runlog, tc, ckpt, task, stopper, saved_config, batching)
                        raise
                    budget.evaluated(time.perf_counter() - tick)
                    evaluations.append((step, tick - begin, time.perf_counter() - begin))
                    em = record.get("exact_match", em)
                    stop_early = stopper.update(step, record)
                    runlog.eval(record)
                    runlog.line(f"eval step {step}: held-out exact match {em:.2%} of {len(heldout['src'])}, "
                                f"teacher-forced loss {record['heldout_loss']:.4f}"
                                + (f", BLEU {record['bleu']:.2f}" if "bleu" in record else "")
                                + f"  ({time.perf_counter() - begin:.0f}s)")
                    meter.tick = time.perf_counter()  # keep evaluation time out of the steps/s figure
                if save_now:
                    tick = time.perf_counter()
                    ckpt.save(step, state, checkpoint_meta(step, state, tc, task, stopper.state(), saved_config,
                                              data_position(task, batching, step)),
                              metrics=record)
                    budget.saved(time.perf_counter() - tick)
                budget.restart_step_clock()
                if stop_early:
                    runlog.line(f"early stopping at step {step}: {tc.best_metric} did not improve for "
                                f"{tc.patience} evaluations (best {stopper.best:.4g} at step {stopper.best_step})")
                    stopped = "early stopping"
                    break
                if last:
                    stopped = "minutes" if timeout and step < tc.steps else ""
                    break
            if interrupts.signum is not None and (single or signalled):
                stopped = _save_interrupted(interrupts.name, done, state, meter, runlog, tc, schedule, ckpt, task,
                                            stopper, saved_config, batching)
        finally:
            if ckpt is not None:
                ckpt.close()
            runlog.close()
    if path is not None and stopped not in ("done",) and not stopped.startswith("interrupted"):
        runlog.line(f"saved to {path}")
    return TrainResult(state=state, exact_match=em, history=runlog.history, seconds=time.perf_counter() - begin,
                       stopped=stopped, train_log=runlog.train_records, evaluations=evaluations)


def _save_interrupted(name: str, step: int, state: TrainState, meter: _Meter, runlog: RunLog, tc: TrainConfig,
                      schedule: Any, ckpt: Any, task: Any, stopper: EarlyStop,
                      saved_config: dict[str, Any] | None, batching: Any) -> str:
    """After SIGINT / SIGTERM: log the steps since the last report and checkpoint `step` (unless it already is),
    so the run resumes exactly where it was stopped."""
    if meter.pending:
        _report(runlog, meter, step, tc, schedule, ckpt)
    if ckpt is not None and ckpt.last_saved != step:
        ckpt.save(step, state, checkpoint_meta(step, state, tc, task, stopper.state(), saved_config,
                                              data_position(task, batching, step)))
    where = f"; checkpoint of step {step} saved in {ckpt.workdir}: run the same command to resume" if ckpt else ""
    runlog.line(f"interrupted by {name} at step {step}{where}")
    return f"interrupted by {name}"


def _save_before_failing(step: int, state: TrainState, runlog: RunLog, tc: TrainConfig, ckpt: Any, task: Any,
                         stopper: EarlyStop, saved_config: dict[str, Any] | None, batching: Any) -> None:
    """An evaluation raised: checkpoint `step` without metrics first (once the cause is fixed, the same command
    resumes from it, and the next evaluation scores it), then let the error go on."""
    if ckpt is None or ckpt.last_saved == step:
        return
    ckpt.save(step, state, checkpoint_meta(step, state, tc, task, stopper.state(), saved_config,
                                          data_position(task, batching, step)))
    runlog.line(f"evaluation at step {step} failed; checkpoint of step {step} saved in {ckpt.workdir} first")


class _Meter:
    """Metrics of the steps since the last report, left on the device until then (no sync per step)."""

    def __init__(self, step: int) -> None:
        self.pending: list[dict[str, jax.Array]] = []
        self.step, self.tick = step, time.perf_counter()


def _check_finite(values: list[dict[str, Any]], first_step: int, ckpt: Any) -> None:
    """Stop with a clear message at the first non-finite loss, gradient or updated parameter (the values of steps
    first_step+1, ...): nothing after it is saved, so the last checkpoint is the last good state."""
    for i, v in enumerate(values):
        if not all(math.isfinite(float(v[k])) for k in ("loss", "grad_norm", "param_norm")):
            good = None if ckpt is None else ckpt.last_saved
            where = (f"the last good checkpoint, step {good}, is kept in {ckpt.workdir}" if good
                     else "no checkpoint was saved")
            raise UserError(f"training stopped: non-finite numbers at step {first_step + i + 1} (loss "
                            f"{float(v['loss']):.4g}, gradient norm {float(v['grad_norm']):.4g}, parameter norm "
                            f"{float(v['param_norm']):.4g}); {where}. Lower the learning "
                            "rate (--lr) or clip gradients (--set optimizer.clip_norm=1) and train in a new --workdir")


def _report(runlog: RunLog, meter: _Meter, step: int, tc: TrainConfig, schedule: Any, ckpt: Any) -> None:
    """Fetch the pending metrics; stop on a non-finite loss; write a train.jsonl record and a progress line."""
    values = jax.device_get(meter.pending)
    _check_finite(values, meter.step, ckpt)
    now = time.perf_counter()
    n, seconds = step - meter.step, max(now - meter.tick, 1e-9)
    tokens = float(sum(v["tokens"] for v in values))
    record = {"step": step, "loss": float(np.mean([v["loss"] for v in values])),
              "grad_norm": float(np.mean([v["grad_norm"] for v in values])), "lr": float(schedule(step - 1)),
              "tokens": tokens, "steps_per_s": n / seconds, "tokens_per_s": tokens / seconds}
    meter.pending, meter.step, meter.tick = [], step, now
    runlog.train(record)
    runlog.advance(0, loss=record["loss"], tok_s=f"{record['tokens_per_s']:,.0f}")
    runlog.line(f"step {step:>6}/{tc.steps}  loss {record['loss']:.4f}  {record['steps_per_s']:.1f} steps/s  "
                f"{record['tokens_per_s']:,.0f} tokens/s")


def data_position(task: Any, batch_size: Any, step: int) -> dict[str, int]:
    """Where the data stream is after `step` steps. Batches are a pure function of (seed, step), so this is
    the step itself; for bucketed text data also the epoch and the index within it (to detect changed data)."""
    pos = {"batches": step}
    if hasattr(task, "batcher"):
        b = task.batcher(batch_size)
        pos.update(epoch=step // b.per_epoch, index=step % b.per_epoch, per_epoch=b.per_epoch)
    return pos


def checkpoint_meta(step: int, state: TrainState, tc: TrainConfig, task: Any, early_stopping: dict[str, Any],
                    saved_config: dict[str, Any] | None, data: dict[str, int] | None = None) -> dict[str, Any]:
    """The `meta` item of a checkpoint: what resuming needs beside params and optimizer state. `data`: the data
    position, by default where the task's stream is after `step` steps (a task without training data, whose
    weights come from elsewhere, passes {"batches": step})."""
    from s2s_jax.training.checkpoint import rng_to_json

    data = data_position(task, tc.batching(jax.device_count()), step) if data is None else data
    return {"step": step, "rng": rng_to_json(state.rng), "data": data,
            "early_stopping": early_stopping, "config": saved_config,
            "vocab": {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()}}


def _restore(ckpt: Any, state: TrainState, state_sh: Any, stopper: EarlyStop, task: Any,
             batching: Any) -> tuple[TrainState, int]:
    step = int(ckpt.latest)
    params, opt_state, meta = ckpt.restore(step, state)
    saved, now = meta.get("data"), data_position(task, batching, step)
    if saved is not None and any(now.get(k, v) != v for k, v in saved.items()):
        raise UserError(f"the checkpoint of step {step} in {ckpt.workdir} is at data position {saved}, but the data "
                        f"now gives {now}: the training data changed since; resume with the original data or "
                        "train in a new --workdir")
    stopper.load(meta.get("early_stopping", {}))
    small = sharding.place({"step": np.int32(step), "rng": np.asarray(meta["rng"], np.uint32)},
                           {"step": state_sh.step, "rng": state_sh.rng})
    return state.replace(step=small["step"], params=params, opt_state=opt_state, rng=small["rng"]), step


def check_can_train(cfg: ModelConfig, task: Any, tc: TrainConfig, mesh: Mesh) -> None:
    """The mistakes that make a run impossible, found before anything is written: a batch the devices cannot
    split, sequences longer than the model's positions. Callers that set up a workdir call it first."""
    if tc.max_tokens and not hasattr(task, "batcher"):
        raise UserError(f"max_tokens={tc.max_tokens}: batches by tokens need a text task (--data); the "
                        f"{task.name} task has fixed-size examples, give --batch-size")
    if not tc.max_tokens:  # token batches are made divisible by construction
        sharding.check_batch(tc.batch_size, tc.grad_accum, mesh)
    _check_positions(cfg, task, tc.batching(mesh.size))


def _check_positions(cfg: ModelConfig, task: Any, batch_size: Any) -> None:
    """Models with learned position tables cannot take sequences longer than their `max_len`: say so up front
    (a lookup past the table would silently give garbage)."""
    limit = target_limit(cfg)
    if limit is None:
        return
    widths = {"training": task.train_batch(1, batch_size), "held-out": task.heldout_batch()}
    for name, b in widths.items():
        width = max(b["src"].shape[1], b["tgt_in"].shape[1])
        if hasattr(task, "batcher") and name == "training":
            width = max(width, *task.batcher(batch_size).shapes)
        if width > limit:
            raise UserError(f"the {name} data has sequences of {width} positions but the {cfg.family} model has "
                            f"{limit} (max_len): raise it (--set max_len={width}) or give shorter sequences")
