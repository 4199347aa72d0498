"""The run config: sections, recipes, `--set section.key=value`, JSON round trip, and the train verb's layering."""

import json

import pytest

from s2s_jax.cli import build_parser, main
from s2s_jax.cli.train import run_from_args
from s2s_jax.config import ConfigError
from s2s_jax.errors import UserError
from s2s_jax.run.config import RunConfig
from s2s_jax.run.overrides import split_overrides
from s2s_jax.run.workdir import load_run_config


def _run(*argv):
    return run_from_args(build_parser().parse_args(["train", "--workdir", "/nonexistent/w", *argv]))


def test_layers_defaults_recipe_flags_and_set():
    run, task = _run("--preset", "addition-gru", "--lr", "0.01", "--set", "hid_dim=32", "--set", "model.emb_dim=4",
                     "--set", "optimizer.b2=0.98", "--set", "training.keep=5", "--set", "training.shard_params=true",
                     "--set", "decoding.beam=3", "--set", "data.n_heldout=20", "--grad-accum", "2")
    assert (run.model.hid_dim, run.model.emb_dim, run.model.src_vocab_size) == (32, 4, 14)
    assert (run.optimizer.lr, run.optimizer.b2, run.optimizer.schedule) == (0.01, 0.98, "cosine")
    assert (run.training.keep, run.training.shard_params, run.training.grad_accum) == (5, True, 2)
    assert run.decoding.beam == 3
    assert run.data.to_dict() == {"name": "addition", "digits": 2, "seed": 0, "n_heldout": 20}
    assert task.n_heldout == 20
    # a preset with a training intent picks its recipe; a flag still beats the recipe, --set beats the flag
    run, _ = _run("--preset", "transformer", "--set", "hid_dim=16", "--set", "n_heads=2", "--warmup-steps", "10",
                  "--set", "optimizer.label_smoothing=0.2")
    assert (run.optimizer.schedule, run.optimizer.b2, run.optimizer.warmup_steps) == ("inverse_sqrt", 0.98, 10)
    assert run.optimizer.label_smoothing == 0.2
    run, _ = _run("--preset", "transformer", "--recipe", "default", "--set", "hid_dim=16", "--set", "n_heads=2")
    assert run.optimizer.schedule == "cosine"


def test_a_recipe_may_set_the_model_under_the_flags():
    """multi30k-tiny: fairseq's tiny Transformer on the marian family; --set still beats the recipe's model."""
    run, _ = _run("--preset", "marian", "--recipe", "multi30k-tiny", "--set", "ff_dim=64", "--max-tokens", "500")
    m = run.model
    assert (m.family, m.hid_dim, m.n_layers, m.n_heads, m.ff_dim, m.dropout) == ("marian", 128, 4, 4, 64, 0.3)
    assert (m.positions, m.activation, m.tie_embeddings) == ("fairseq", "relu", True)
    assert (run.optimizer.lr, run.optimizer.warmup_steps, run.optimizer.label_smoothing) == (5e-3, 2000, 0.1)
    assert (run.training.max_tokens, run.training.keep, run.decoding.beam) == (500, 10, 5)


def test_the_cpu_sized_recipe_keeps_the_tiny_recipes_tools():
    """multi30k-cpu: the bentrevett Transformer's sizes with multi30k-tiny's tools, EMA on; flags still win."""
    run, _ = _run("--preset", "marian", "--recipe", "multi30k-cpu", "--warmup-steps", "50")
    m, o, t = run.model, run.optimizer, run.training
    assert (m.hid_dim, m.n_layers, m.n_heads, m.ff_dim, m.dropout) == (256, 3, 8, 512, 0.2)
    assert (m.share_embeddings, m.tie_embeddings, m.positions) == (True, True, "fairseq")
    assert (o.lr, o.schedule, o.warmup_steps, o.label_smoothing, o.ema_decay) == (1e-3, "cosine", 50, 0.1, 0.999)
    assert (t.max_tokens, t.steps, t.checkpoint_every, t.keep, t.best_metric) == (3000, 5000, 150, 10, "bleu")
    assert (run.decoding.beam, run.decoding.alpha) == (5, 1.0)


def test_json_round_trip_and_diff():
    run, _ = _run("--preset", "addition-gru", "--set", "data.n_heldout=30", "--recipe", "smoke")
    back = RunConfig.from_dict(json.loads(run.to_json()))
    assert back == run and back.to_dict() == run.to_dict()
    other = run.replace("training", steps=7).replace("model", hid_dim=3)
    assert run.diff(other) == [("model.hid_dim", run.model.hid_dim, 3), ("training.steps", 20, 7)]


@pytest.mark.parametrize("item, message", [
    ("nope=1", "unknown model config key(s) ['nope']; valid model keys: family, origin"),
    ("training.nope=1", "valid training keys: steps, batch_size, seed"),
    ("optimizer.lr=fast", "optimizer.lr=fast: expected float"),
    ("training.shard_params=maybe", "expected true or false"),
    ("trainng.steps=1", "unknown section 'trainng'; valid sections: model, data, optimizer, training, decoding"),
    ("data.digitz=3", "valid data keys: digits, n_heldout, seed"),
    ("steps", "expected key=value"),
])
def test_bad_overrides_name_the_valid_keys(item, message):
    with pytest.raises((ConfigError, UserError)) as e:
        _run("--preset", "addition-gru", "--set", item)
    assert message in str(e.value)


def test_bad_values_and_recipes():
    with pytest.raises(UserError, match="batch_size=10 must be divisible by grad_accum=4"):
        _run("--preset", "addition-gru", "--batch-size", "10", "--grad-accum", "4")
    with pytest.raises(UserError, match="best_metric"):
        RunConfig.from_dict({**_run("--preset", "addition-gru")[0].to_dict(), "training": {"best_metric": "f1"}})
    with pytest.raises(ConfigError, match="lacks section"):
        RunConfig.from_dict({"model": {}})
    assert split_overrides(["a=1", "optimizer.b1=0.8"]) == {"model": {"a": "1"}, "optimizer": {"b1": "0.8"}}


def test_resume_from_the_workdir_alone(tmp_path, capsys):
    w = tmp_path / "w"
    base = ["train", "--workdir", str(w), "--preset", "addition-gru", "--digits", "1", "--steps", "4",
            "--batch-size", "8", "--eval-every", "0", "--log-every", "2", "--set", "emb_dim=4", "--set", "hid_dim=4"]
    assert main(base) == 0
    saved = load_run_config(w)
    assert saved.training.steps == 4 and saved.model.hid_dim == 4 and saved.preset == "addition-gru"
    capsys.readouterr()
    assert main(["train", "--workdir", str(w), "--minutes", "5"]) == 0  # minutes may differ on resume
    assert "already trained to step 4" in capsys.readouterr().out
    assert main(["train", "--workdir", str(w), "--steps", "8"]) == 2
    assert "training.steps: saved 4, now 8" in capsys.readouterr().err
    assert main(["train", "--workdir", str(w), "--digits", "3"]) == 2
    assert "--digits: a run resumed from its workdir takes its data" in capsys.readouterr().err
    assert main(["train", "--workdir", str(tmp_path / "none")]) == 2
    assert "--preset is required for a new run" in capsys.readouterr().err
    assert load_run_config(w) == saved
