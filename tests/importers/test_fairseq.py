"""fairseq transformer and fconv checkpoints: imported models reproduce the reference modules' logits, dict.txt
round-trips, and a wrong or partial checkpoint is an error naming the key.

The references are tests/importers/fairseq_reference.py (fairseq's modules transcribed: fairseq does not
install on this Python). Each checkpoint is written as fairseq's trainer writes one: {"args": Namespace,
"model": state_dict, "extra_state": {... objects of classes fairseq would need ...}}, next to its
dict.xx.txt / dict.yy.txt, with random weights; the importer must read it weights-only, without those classes.
"""

from __future__ import annotations

import argparse
import re

import jax
import numpy as np
import pytest
import torch

from s2s_jax.cli import main
from s2s_jax.cli.importing import read, to_flax
from s2s_jax.importers.fairseq_dict import read_dict, write_dict
from s2s_jax.importers.weights import CheckpointError
from s2s_jax.models import build_model
from tests.importers import fairseq_reference as ref

SRC_WORDS, TGT_WORDS = 37, 29  # dictionary sizes: 4 specials + these
PAD, EOS = 1, 2


class TrainMeter:
    """Stands for the fairseq classes a real checkpoint pickles (meters, configs): not importable by the reader."""

    def __init__(self) -> None:
        self.sum, self.count = 3.5, 7


def write_dicts(folder) -> None:
    for lang, n in (("xx", SRC_WORDS), ("yy", TGT_WORDS)):
        words = [f"{lang}{i}@@" if i % 3 == 0 else f"{lang}{i}" for i in range(n)]
        (folder / f"dict.{lang}.txt").write_text("".join(f"{w} {1000 - 7 * i}\n" for i, w in enumerate(words)))


def save_checkpoint(path, args: argparse.Namespace, model: torch.nn.Module) -> None:
    torch.save({"args": args, "model": model.state_dict(), "optimizer_history": [{"num_updates": 10}],
                "extra_state": {"train_meters": {"loss": TrainMeter()}, "epoch": 2}}, path)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter redrawn (layer norms and biases included) so that each weight's place matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):  # weight norm: a row's norm, 1 to 2 (fconv's logits then span units;
                p.copy_(1.0 + torch.rand(p.shape, generator=g))  # at 1 to 3 float32 alone differs by 7e-5 at 50)
                continue
            scale = 0.5 / max(p.shape[-1], 1) ** 0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith("layer_norm.weight") else 0.0))


def batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """src [4, 9] ending in eos then right padding, lengths, decoder input ([eos] + target, padded), target lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.array([9, 3, 6, 1])
    src = np.full((4, 9), PAD)
    tgt = np.full((4, 7), PAD)
    tgt_lengths = np.array([7, 2, 5, 4])
    for i, (n, m) in enumerate(zip(lengths, tgt_lengths, strict=True)):
        src[i, : n - 1] = rng.integers(4, 4 + SRC_WORDS, n - 1)
        src[i, n - 1] = EOS
        tgt[i, 0] = EOS
        tgt[i, 1:m] = rng.integers(4, 4 + TGT_WORDS, m - 1)
    return src, lengths, tgt, tgt_lengths


def compare(imported, reference: torch.nn.Module, seed: int) -> float:
    """Max |logit difference| of the imported Flax model and the reference at the real target positions."""
    src, lengths, tgt, tgt_lengths = batch(seed)
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(src), torch.from_numpy(tgt)).numpy()
    model, params = build_model(imported.cfg), to_flax(imported)
    logits = np.asarray(jax.jit(model.apply)({"params": params}, src.astype(np.int32), lengths.astype(np.int32),
                                             tgt.astype(np.int32)))
    real = np.arange(tgt.shape[1])[None, :] < tgt_lengths[:, None]
    assert np.abs(expected).max() > 1.0, "logits too small for the comparison to mean much"
    return float(np.abs(logits - expected)[real].max())


TRANSFORMERS = {
    "post-LN, sinusoidal, separate tables": {},
    "pre-LN, learned positions, all shared, gelu": dict(encoder_normalize_before=True, decoder_normalize_before=True,
                                                        encoder_learned_pos=True, decoder_learned_pos=True,
                                                        share_all_embeddings=True, activation_fn="gelu"),
    "tied output": dict(share_decoder_input_output_embed=True, arch="transformer_iwslt_de_en"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformer_logits_match_fairseq(tmp_path, name):
    args = ref.transformer_args(**TRANSFORMERS[name])
    sizes = (4 + SRC_WORDS, 4 + (SRC_WORDS if args.share_all_embeddings else TGT_WORDS))
    torch.manual_seed(0)
    model = ref.TransformerModel(args, *sizes, PAD)
    randomize(model, seed=1)
    write_dicts(tmp_path)
    if args.share_all_embeddings:
        (tmp_path / "dict.yy.txt").write_text((tmp_path / "dict.xx.txt").read_text())
    save_checkpoint(tmp_path / "checkpoint_best.pt", argparse.Namespace(**vars(args)), model)
    imported = read("fairseq", tmp_path / "checkpoint_best.pt")
    assert imported.cfg.family == "marian" and imported.cfg.bos_id == EOS  # fairseq's decoder starts from </s>
    err = compare(imported, model, seed=2)
    print(f"{name}: max |logit - fairseq| {err:.2e}")
    assert err <= 1e-5


@pytest.mark.parametrize("share", [False, True])
def test_fconv_logits_match_fairseq(tmp_path, share):
    args = ref.fconv_args(share_input_output_embed=share)
    torch.manual_seed(0)
    model = ref.FConvModel(args, 4 + SRC_WORDS, 4 + TGT_WORDS, PAD, [(24, 3)] * 2)
    randomize(model, seed=3)
    write_dicts(tmp_path)
    save_checkpoint(tmp_path / "checkpoint_best.pt", argparse.Namespace(**vars(args)), model)
    imported = read("fairseq", tmp_path / "checkpoint_best.pt")
    assert (imported.cfg.family, imported.cfg.conv_style, imported.cfg.weight_norm) == ("convs2s", "fconv", True)
    err = compare(imported, model, seed=4)
    print(f"fconv share={share}: max |logit - fairseq| {err:.2e}")
    assert err <= 1e-5


def test_dict_round_trip(tmp_path):
    write_dicts(tmp_path)
    original = (tmp_path / "dict.xx.txt").read_bytes()
    d = read_dict(tmp_path / "dict.xx.txt")
    # fairseq's Dictionary: <s> <pad> </s> <unk>, then the file's words in order
    assert d.vocab.tokens[:5] == ["<s>", "<pad>", "</s>", "<unk>", "xx0@@"] and len(d.vocab) == 4 + SRC_WORDS
    assert (d.vocab.pad_id, d.vocab.eos_id, d.vocab.unk_id, d.vocab.bos_id) == (1, 2, 3, 2)
    write_dict(d, tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_bytes() == original
    assert read_dict(tmp_path / "again.txt").vocab == d.vocab
    (tmp_path / "dict.bad.txt").write_text("word 3\nword 4\n")
    with pytest.raises(Exception, match="dict.bad.txt:2: duplicate word 'word'"):
        read_dict(tmp_path / "dict.bad.txt")


def _broken(tmp_path, edit) -> tuple[int, str]:
    """Exit code and stderr of `s2s-jax import fairseq` on a fconv checkpoint changed by `edit(checkpoint)`."""
    args = ref.fconv_args()
    model = ref.FConvModel(args, 4 + SRC_WORDS, 4 + TGT_WORDS, PAD, [(24, 3)] * 2)
    ckpt = {"args": argparse.Namespace(**vars(args)), "model": model.state_dict()}
    edit(ckpt)
    write_dicts(tmp_path)
    torch.save(ckpt, tmp_path / "checkpoint_best.pt")
    return main(["import", "fairseq", str(tmp_path / "checkpoint_best.pt"), "--workdir", str(tmp_path / "w")])


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].pop("decoder.attention.1.in_projection.weight_v"),
     "missing key 'decoder.attention.1.in_projection.weight_v'"),
    (lambda c: c["model"].update({"encoder.extra.weight": torch.zeros(2)}), "unexpected key 'encoder.extra.weight'"),
    (lambda c: c["model"].update({"decoder.fc2.bias": torch.zeros(5)}),
     r"key 'decoder.fc2.bias' has shape \(5,\), the config says \(16,\)"),
    (lambda c: setattr(c["args"], "arch", "lstm_wiseman_iwslt_de_en"),
     "arch 'lstm_wiseman_iwslt_de_en' is not supported"),
    (lambda c: setattr(c["args"], "decoder_layers", "[(24, 3)] * 3"), "2 encoder layers but 3 decoder layers"),
])
def test_bad_checkpoint_is_one_line_exit_2(tmp_path, capsys, edit, message):
    assert _broken(tmp_path, edit) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("s2s-jax import: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "w").exists()  # nothing written


def test_unreadable_checkpoint_is_an_error(tmp_path):
    (tmp_path / "checkpoint_best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        read("fairseq", tmp_path / "checkpoint_best.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a fairseq checkpoint"):
        read("fairseq", tmp_path / "other.pt")
