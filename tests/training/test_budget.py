"""`--minutes` is the whole run's budget: compilation, steps, evaluations, and the final evaluation and save all
fit in it (the loop keeps back the time they took when last measured)."""

from s2s_jax import presets
from s2s_jax.data.addition import AdditionTask
from s2s_jax.run.config import DecodeOptions, TrainConfig
from s2s_jax.run.train import train
from s2s_jax.training.stopping import Budget

TASK = AdditionTask(digits=2, n_heldout=300)
# beam-2 validation of 300 sums: an evaluation that costs seconds, as Multi30k's do at scale
CFG = presets.get("addition-attn", src_vocab_size=len(TASK.src_vocab), tgt_vocab_size=len(TASK.tgt_vocab),
                  emb_dim=12, hid_dim=12)


def test_the_final_evaluation_fits_in_the_budget(tmp_path):
    # The budget is sized to this machine under its present load. A short run first compiles what the timed run
    # uses (jit caches are per process), and its time, compilation included, is the budget when over 15 s: some
    # three times what set-up, one evaluation and one save then cost, so steps fit after them. (A fixed 15 s on a
    # cold process ended after one step: compiling the step and the beam-2 evaluation alone took 23 s.)
    calibration = train(CFG, TASK, TrainConfig(steps=2, batch_size=16, eval_every=0, log_every=50), tmp_path / "c",
                        log=lambda line: None, decoding=DecodeOptions(beam=2))
    SECONDS = max(15.0, calibration.seconds)
    tc = TrainConfig(steps=10**6, batch_size=16, eval_every=0, log_every=50, minutes=SECONDS / 60)
    result = train(CFG, TASK, tc, tmp_path / "w", log=lambda line: None, decoding=DecodeOptions(beam=2))
    assert result.stopped == "minutes"
    steps = int(result.state.step)
    assert steps > 1 and result.history[-1]["step"] == steps  # it evaluated where it stopped, and saved it
    (_, first_start, first_end), (last_step, _, _) = result.evaluations[0], result.evaluations[-1]
    # The evaluation's cost is learnt early, within the budget (the old loop's only evaluation began after it) ...
    assert first_start < SECONDS and len(result.evaluations) >= 2 and last_step == steps
    # ... and from then on the run ends in time. Only a machine so slow that set-up, compilation and that first
    # evaluation alone outlast the budget may end late, by no more than they did.
    late = max(0.0, first_end - SECONDS)
    assert result.seconds <= SECONDS * 1.05 + late, (result.seconds, result.evaluations)


def test_budget_arithmetic():
    b = Budget(1.0, begin=100.0)
    assert not b.wants_probe(105.0) and b.wants_probe(106.0)  # no evaluation measured by a tenth of the budget
    b.step_done(106.0)
    b.step_done(107.0)  # steps of 1 s
    b.evaluated(20.0)
    b.saved(2.0)
    assert not b.wants_probe(108.0)
    assert not b.exhausted(136.9) and b.exhausted(137.0)  # 160 - (1 + 20 + 2)
    assert not Budget(0.0, begin=0.0).active and not Budget(0.0, begin=0.0).exhausted(1e12)


def test_a_failing_evaluation_saves_the_steps_first(tmp_path):
    """An exception in the held-out decoding (a bug, a full disk, ...) re-raises, but only after the step is
    checkpointed: the run resumes from it instead of from the last save."""
    from unittest import mock

    import pytest

    from s2s_jax.run.workdir import load_run

    tc = TrainConfig(steps=6, batch_size=16, eval_every=0, log_every=3)
    with mock.patch("s2s_jax.run.train.decode_heldout", side_effect=RuntimeError("boom")):
        with pytest.raises(RuntimeError, match="boom"):
            train(CFG, TASK, tc, tmp_path / "w", log=lambda line: None)
    assert load_run(tmp_path / "w", "latest").step == 6
