"""Seed 002's weather/cooking rule: data follows the rule, and every cell learns it."""

import numpy as np
import pytest

from s2s_jax.tagging import FOODS, TOKENS, accuracy, describe, make_sequences, train_tagger


def test_sequences_follow_the_rule():
    inputs, tags = make_sequences(np.random.default_rng(0), 50, 12)
    assert inputs.shape == tags.shape == (50, 13)
    for x, y in zip(inputs, tags, strict=True):
        food = x[0]
        assert y[0] == food
        for day in range(1, 13):
            if TOKENS[x[day]] == "rainy":
                food = (food + 1) % 3
            else:
                assert TOKENS[x[day]] == "sunny"
            assert y[day] == food
    first = describe(inputs[0], tags[0])[0]
    assert first.split()[0] in ("sunny", "rainy") and first.split()[1] in FOODS


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_each_cell_learns_the_rule(cell):
    model, params = train_tagger(cell, steps=200, batch=64, days=10, lr=0.03, seed=0, emb_dim=8, hid_dim=16)
    # Held out: fresh sequences twice as long as any seen in training.
    inputs, tags = make_sequences(np.random.default_rng(12345), 500, 20)
    assert accuracy(model, params, inputs, tags) >= 0.99
