"""bench/quality.py's table: the run's result is the weights chosen on validation, never on test_2016."""

from __future__ import annotations

from bench.quality import chosen, markdown

ROW = {"preset": "bentrevett-gru", "reference_bleu": 20.6, "sizes": "emb_dim 256", "params": 9.1e6, "cores": 1,
       "minutes": 60, "train_seconds": 3660, "steps": 4300, "best_step": 4200, "valid_bleu": 20.0, "test_bleu": 21.0}


def test_chosen_is_the_best_checkpoint_without_other_weights():
    assert chosen(ROW) == ("best", 21.0)


def test_chosen_follows_validation_not_test():
    row = {**ROW, "averaged_bleu": 25.0, "averaged_valid_bleu": 19.0, "ema_bleu": 20.5, "ema_valid_bleu": 20.4}
    assert chosen(row) == ("ema", 20.5)
    assert chosen({**row, "averaged_valid_bleu": 20.4}) == ("averaged", 25.0)  # a tie keeps the earlier


def test_markdown_prints_the_chosen_result():
    row = {**ROW, "averaged_bleu": 22.5, "averaged_valid_bleu": 20.7}
    line = markdown([row], beam=5).splitlines()[-1]
    assert "averaged: **22.50**" in line and "4,300 (4,200)" in line and "| 20.6 |" in line
