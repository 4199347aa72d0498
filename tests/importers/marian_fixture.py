"""A small Hugging Face MarianMTModel saved with `save_pretrained`, built locally (nothing downloaded).

Two made-up languages of syllable words, the target a syllable-by-syllable mapping of the source; a
SentencePiece model trained on each side's text (as OPUS-MT has `source.spm` / `target.spm`); `vocab.json`
the union of both models' pieces with `</s>` = 0, `<unk>` = 1 and `<pad>` last, as OPUS-MT's vocabularies are
laid out. The model is trained for a few dozen Adam steps on that mapping (about a second): a purely random
decoder falls into repeating one token and never emits eos, and tests of search and length handling need
outputs that end at varied lengths. `final_logits_bias` is then drawn at random (Marian's is a fixed buffer),
its eos entry raised so that no output of `sample_inputs` runs into a 30-token bound.
"""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

SRC_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "bo", "da", "fu")
TGT_SYLLABLES = ("the", "an", "or", "is", "pe", "qu", "ly", "st", "ow", "ea", "ing", "er")
SIZES = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
             encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)


def sentences(syllables: tuple[str, ...], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3)))

    return [" ".join(word() for _ in range(rng.randint(2, 7))) + rng.choice(["", ".", " ?", "!"]) for _ in range(n)]


def sample_inputs(n: int = 50) -> list[str]:
    """Source sentences with what the tokenizer must get right: unseen characters (unk), a language code,
    extra spaces, digits."""
    out = sentences(SRC_SYLLABLES, n, seed=99)
    out[0] = ">>fr<< " + out[0]
    out[1] = "  " + out[1].replace(" ", "   ") + "  "
    out[2] = out[2] + " é ß 42"
    out[3] = "ka"
    return out


def target_of(source: str) -> str:
    """The made-up translation: each source syllable replaced by the target syllable of the same rank."""
    table = dict(zip(SRC_SYLLABLES, TGT_SYLLABLES, strict=True))
    return re.sub("|".join(SRC_SYLLABLES), lambda m: table[m.group(0)], source)


def train_spm(texts: list[str], vocab_size: int) -> bytes:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                   minloglevel=2)
    return out.getvalue()


def marian_vocab(*protos: bytes) -> dict[str, int]:
    import sentencepiece as spm

    pieces = ["</s>", "<unk>"]
    for proto in protos:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if piece not in pieces and piece not in ("<s>", "<unk>", "</s>"):
                pieces.append(piece)
    return {p: i for i, p in enumerate(pieces + ["<pad>"])}


def build(directory: Path, *, seed: int = 0, share: bool = True, steps: int = 40, **config) -> Path:
    """Write a MarianMTModel + MarianTokenizer save_pretrained directory (`steps` Adam steps of training); return it."""
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    src_text = sentences(SRC_SYLLABLES, 400, seed=1)
    tgt_text = [target_of(s) for s in src_text]
    (directory / "source.spm").write_bytes(src_proto := train_spm(src_text, 48))
    (directory / "target.spm").write_bytes(tgt_proto := train_spm(tgt_text, 48))
    vocab = marian_vocab(src_proto, tgt_proto)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tok = MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"), str(directory / "vocab.json"))
    pad = len(vocab) - 1
    cfg = MarianConfig(vocab_size=len(vocab), pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
                       forced_eos_token_id=0, activation_function="swish", scale_embedding=True, init_std=0.1,
                       share_encoder_decoder_embeddings=share, **{**SIZES, **config})
    torch.manual_seed(seed)
    model = MarianMTModel(cfg)
    batch = tok(src_text[:256], text_target=tgt_text[:256], return_tensors="pt", padding=True)
    labels = batch["labels"].masked_fill(batch["labels"] == pad, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        rows = slice(step * 32 % 256, step * 32 % 256 + 32)
        loss = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows],
                     labels=labels[rows]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 0.1)
        model.final_logits_bias[0, 0] += 2.0  # eos: greedy and beam outputs of the inputs end within 30 tokens
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
