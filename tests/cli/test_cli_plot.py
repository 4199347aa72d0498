"""`s2s-jax translate --plot-attention`: a real heatmap for attention models, one-line errors otherwise,
and weights that are the ones the step-by-step decoder used for each output token."""

import matplotlib.image
import numpy as np
import pytest

from s2s_jax import presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.cli import main
from s2s_jax.decoding.attention_weights import make_attention_weights
from s2s_jax.decoding.greedy import make_greedy_decoder
from s2s_jax.errors import UserError
from s2s_jax.layers.rnn import reverse_within_lengths
from s2s_jax.models import build_model

TINY = ["--set", "emb_dim=16", "--set", "hid_dim=16", "--steps", "30", "--batch-size", "16", "--eval-every", "0"]


def _train(path, preset):
    assert main(["train", "--preset", preset, "--digits", "2", "--workdir", str(path), *TINY]) == 0
    return path


@pytest.fixture(scope="module")
def attn_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("plot") / "attn", "addition-attn")


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("plot") / "gru", "addition-gru")


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert message in captured.err
    assert captured.out == ""


def test_plot_attention_writes_a_heatmap(attn_run, tmp_path, capsys):
    png = tmp_path / "figs" / "attn.png"
    assert main(["translate", "--workdir", str(attn_run), "--plot-attention", str(png), "12+35"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1  # the translation, as without the flag
    assert main(["translate", "--workdir", str(attn_run), "12+35"]) == 0
    assert capsys.readouterr().out.splitlines() == out
    image = matplotlib.image.imread(png)
    # 2-digit source `12+35}` (6 tokens) across, at most 4 output tokens down: plot.py's figsize at 100 dpi.
    assert image.shape[:2] == (300, int(100 * (0.45 * 6 + 1.5)))
    rgb = image[..., :3]
    assert rgb.var() > 0 and not np.all(rgb == 1.0)  # not blank, not all white


def test_plot_attention_refuses_a_model_without_attention(gru_run, tmp_path, capsys):
    png = tmp_path / "gru.png"
    _one_line_error(capsys, ["translate", "--workdir", str(gru_run), "--plot-attention", str(png), "1+2"],
                    "has no attention weights to plot")
    assert not png.exists()


@pytest.mark.parametrize("inputs", [["1+2", "3+4"], []])
def test_plot_attention_needs_exactly_one_input(attn_run, tmp_path, capsys, monkeypatch, inputs):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    png = tmp_path / "a.png"
    message = "give exactly one" if inputs else "nothing to translate"
    _one_line_error(capsys, ["translate", "--workdir", str(attn_run), "--plot-attention", str(png), *inputs], message)
    assert not png.exists()


# Tiny untrained models of each family with attention: the teacher-forced weights of the greedy output
# must be the weights decode_step produced while emitting it.
TINY_CFG = dict(src_vocab_size=13, tgt_vocab_size=13, emb_dim=8, hid_dim=8, n_layers=2, pad_id=0, bos_id=1, eos_id=2)
CASES = {
    "addition-attn": presets.get("addition-attn", **{**TINY_CFG, "n_layers": 1}),
    "tutorial-attn": presets.get("tutorial-attn", **{**TINY_CFG, "n_layers": 1}),
    "luong": presets.get("luong", **TINY_CFG),
    "convs2s": presets.get("convs2s", **TINY_CFG, max_len=16),
    "transformer": presets.get("transformer", **TINY_CFG, n_heads=2, ff_dim=16, max_len=16),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_weights_are_the_step_by_step_weights(name):
    cfg = CASES[name]
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5)
    params = init_params(cfg, batch)
    model = build_model(cfg)
    max_len = 5
    tokens, _ = make_greedy_decoder(model, max_len)(params, batch["src"], batch["src_lengths"])
    got = np.asarray(make_attention_weights(model)(params, batch["src"], batch["src_lengths"], tokens))

    v = {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    state = model.apply(v, enc, max_decode_len=max_len, method="init_decode_state")
    token = np.full(3, cfg.bos_id, np.int32)
    want = []
    for t in range(max_len):
        if cfg.family == "attention":
            _, state = model.apply(v, enc, token, state, method="decode_step")
            w = state.attention
        else:
            _, state, w = model.apply(v, enc, token, state, return_attention=True, method="decode_step")
            w = w.mean(axis=1) if w.ndim == 3 else w  # transformer heads
        want.append(np.asarray(w))
        token = np.asarray(tokens)[:, t]
    want = np.stack(want, axis=1)
    assert got.shape == want.shape and got.shape[:2] == (3, max_len)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # each row is a distribution (over the source; for location attention over its max_len positions)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_rnn_family_has_no_weights():
    with pytest.raises(UserError, match="no attention weights"):
        make_attention_weights(build_model(presets.get("addition-gru", emb_dim=4, hid_dim=4)))


def test_reversed_source_weights_are_in_source_order():
    """A reverse_source model on src is the plain model on the reversed src (same parameters), so its
    weights, put back in source order, are the plain model's with the columns reversed within each length."""
    cfg = CASES["addition-attn"].replace(reverse_source=True)
    plain = cfg.replace(reverse_source=False)
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5)
    params = init_params(cfg, batch)
    src, lengths = batch["src"], batch["src_lengths"]
    flipped = np.asarray(reverse_within_lengths(src, lengths))
    tokens, _ = make_greedy_decoder(build_model(cfg), 5)(params, src, lengths)
    got = np.asarray(make_attention_weights(build_model(cfg))(params, src, lengths, tokens))
    plain_w = np.asarray(make_attention_weights(build_model(plain))(params, flipped, lengths, tokens))
    want = np.asarray(reverse_within_lengths(plain_w.swapaxes(1, 2), lengths)).swapaxes(1, 2)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, plain_w, atol=1e-3)


# ---- the same translation path as `translate` (text task: a length bound per source, learned positions) --------
def _text_workdir(path, preset, **overrides):
    """A translation workdir with untrained weights (no data files): an untrained model rarely says eos, so its
    outputs run to the length bound, which makes the bound visible."""
    import optax

    from s2s_jax.data.translation import TranslationTask
    from s2s_jax.run.config import DataConfig, RunConfig
    from s2s_jax.run.train import config_for_task
    from s2s_jax.run.workdir import save_run
    from s2s_jax.training.state import create_train_state

    words = "ein mann mit einem roten hut . eine frau".split()
    rng = np.random.default_rng(0)
    src = [" ".join(rng.choice(words, int(rng.integers(1, 8)))) for _ in range(40)]
    task = TranslationTask("parallel_text:unused.src,unused.tgt", buckets=(8, 16))
    task.fit(src, [s.upper() for s in src])
    cfg = config_for_task(preset, task, dict(emb_dim=8, hid_dim=8, dropout=0.0, **overrides))
    state = create_train_state(build_model(cfg), cfg, optax.adam(1e-3), 0, task.shape_batch())
    save_run(path, RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=preset), task, state)
    return path


@pytest.mark.parametrize("preset, overrides, text", [
    # the bound is 1.5 * 7 + 10 = 20 tokens for this source, not that of its padded width 8 (22)
    ("bentrevett-attention", {}, "ein mann mit einem roten hut ."),
    # 12 tokens pad to a 16 bucket, past the 12 learned positions: plain translate pads only as far as they reach
    ("bentrevett-transformer", dict(n_layers=1, n_heads=2, ff_dim=16, max_len=12), " ".join(["mann"] * 12)),
])
def test_plot_attention_translates_as_translate_does(tmp_path, capsys, preset, overrides, text):
    workdir = _text_workdir(tmp_path / "run", preset, **overrides)
    assert main(["translate", "--workdir", str(workdir), text]) == 0
    plain = capsys.readouterr().out
    png = tmp_path / "a.png"
    assert main(["translate", "--workdir", str(workdir), "--plot-attention", str(png), text]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain and png.exists(), captured.err
    n_src = len(text.split())
    assert len(plain.split()) <= min(int(1.5 * n_src + 10), overrides.get("max_len", 10**6))
