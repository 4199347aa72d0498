"""Seed 002's "RNN example": the roommate's cooking rule as a sequence-tagging task, and a tiny tagger.

Foods cycle applepie -> hamburger -> chicken -> applepie. Each day the roommate
cooks the same food as yesterday if it is sunny, the next food if it is rainy.
A sequence is the first day's food followed by one weather token per later day;
its tags are the food of every day (day 0 included, trivially). Solving it needs
a hidden state that counts rainy days modulo 3: the smallest real test that a
recurrent cell carries state, which is why it checks all three cells.

It lives at the package top level, not in `s2s_jax.data`, because it holds a
model and a trainer (data/ never imports layers/ or models/).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from s2s_jax.layers.rnn import RNNStack

FOODS = ("applepie", "hamburger", "chicken")
WEATHERS = ("sunny", "rainy")
TOKENS = FOODS + WEATHERS  # input ids: foods 0-2, weathers 3-4; tag ids are the food ids


def make_sequences(rng: np.random.Generator, n: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, tags), both int32 [n, days + 1]: inputs = [food_0, weather_1..weather_days]."""
    food0 = rng.integers(0, len(FOODS), n)
    rainy = rng.integers(0, 2, (n, days))
    foods = (food0[:, None] + np.cumsum(rainy, axis=1)) % len(FOODS)
    inputs = np.concatenate([food0[:, None], len(FOODS) + rainy], axis=1)
    tags = np.concatenate([food0[:, None], foods], axis=1)
    return inputs.astype(np.int32), tags.astype(np.int32)


def describe(inputs: np.ndarray, tags: np.ndarray) -> list[str]:
    """Seed-style lines, one per day after the first: "rainy hamburger"."""
    return [f"{TOKENS[w]} {FOODS[t]}" for w, t in zip(inputs[1:], tags[1:], strict=True)]


class Tagger(nn.Module):
    """Embedding -> RNNStack -> Dense: one food prediction per input token."""

    cell: str
    emb_dim: int = 8
    hid_dim: int = 16

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(len(TOKENS), self.emb_dim)(tokens)
        lengths = jnp.full((tokens.shape[0],), tokens.shape[1], jnp.int32)
        hidden, _ = RNNStack(self.cell, self.emb_dim, self.hid_dim, name="rnn")(x, lengths)
        return nn.Dense(len(FOODS))(hidden)


def train_tagger(
    cell: str, *, steps: int = 300, batch: int = 64, days: int = 10, lr: float = 0.03, seed: int = 0, **sizes: int
) -> tuple[Tagger, Any]:
    """Train a `Tagger` with `cell` on fresh random sequences each step; one jitted step, compiled once."""
    model = Tagger(cell, **sizes)
    rng = np.random.default_rng(seed)
    params = model.init(jax.random.key(seed), make_sequences(rng, batch, days)[0])["params"]
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, inputs, tags):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, inputs), tags).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(steps):
        params, opt_state = step(params, opt_state, *make_sequences(rng, batch, days))
    return model, params


def accuracy(model: Tagger, params: Any, inputs: np.ndarray, tags: np.ndarray) -> float:
    """Per-step accuracy over the weather days (day 0's food is given, so it is not scored)."""
    pred = np.asarray(jnp.argmax(model.apply({"params": params}, inputs), -1))
    return float((pred[:, 1:] == tags[:, 1:]).mean())

