"""Config and preset registry: one naming, clear errors for unknown names and keys."""

import json

import pytest

from s2s_jax import ConfigError, ModelConfig, build_model, presets


def test_every_preset_builds_with_overrides():
    for name in presets.names():
        cfg = presets.get(name, src_vocab_size=17, tgt_vocab_size=19)
        assert cfg.src_vocab_size == 17 and cfg.tgt_vocab_size == 19
        assert build_model(cfg) is not None


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="available: .*addition-gru"):
        presets.get("no-such-model")


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown model config key\(s\) \['hidden'\].*hid_dim"):
        presets.get("addition-gru", hidden=3)


@pytest.mark.parametrize(
    "overrides, message",
    [({"cell": "tcn"}, "cell='tcn'"), ({"dropout": 1.5}, "dropout"), ({"hid_dim": 0}, "hid_dim"),
     ({"tgt_vocab_size": 4, "pad_id": 7}, "pad_id=7")],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig().replace(**overrides)


def test_json_round_trip():
    cfg = presets.get("bentrevett-lstm", src_vocab_size=9, tgt_vocab_size=11, reverse_source=True)
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_origin_defaults():
    lstm = presets.get("bentrevett-lstm")
    assert (lstm.cell, lstm.emb_dim, lstm.hid_dim, lstm.n_layers, lstm.dropout) == ("lstm", 256, 512, 2, 0.5)
    gru = presets.get("bentrevett-gru")
    assert (gru.cell, gru.hid_dim, gru.n_layers, gru.context) == ("gru", 512, 1, "cho")


@pytest.mark.parametrize("name, recurrent", [("bentrevett-gru", True), ("bentrevett-attention", True),
                                             ("bentrevett-convs2s", False), ("bentrevett-transformer", False),
                                             ("marian", False)])
def test_only_the_recurrent_families_take_the_rnn_options(name, recurrent):
    cfg = presets.get(name)
    assert cfg.recurrent is recurrent and "recurrent" not in cfg.to_dict()  # derived, never saved
    for option in ({"teacher_forcing": 0.5}, {"reverse_source": True}):
        if recurrent:
            assert cfg.replace(**option).recurrent
        else:
            with pytest.raises(ConfigError, match="implemented by the rnn and attention families"):
                cfg.replace(**option)
