"""fairseq checkpoints (`checkpoint_best.pt` + `dict.SRC.txt` / `dict.TGT.txt`) of the `transformer` and `fconv`
architectures.

A checkpoint is the pickled dict fairseq's trainer saves: `model` (the state dict), and the model's settings
as `args` (an argparse.Namespace, fairseq < 0.10 and the legacy path) or `cfg["model"]` (fairseq >= 0.10;
a dict or an omegaconf node). It is read weights-only (`weights.load_torch_pickle`: fairseq need not be
installed, its other objects are inert). The settings are completed with the named architecture's defaults
(`--arch transformer_iwslt_de_en`, `fconv_iwslt_de_en`, ...) as fairseq's `register_model_architecture`
functions complete them; then `fairseq_transformer` or `fairseq_fconv` checks every key and shape against
the layout those settings imply and renames the weights to the s2s-jax family's torch mirror.

Text: fairseq models read BPE'd, whitespace-tokenized text and append `</s>` to the source (`encode_line`);
the decoder starts from `</s>`. `--bpe subword_nmt` undoes "@@ " on output, `--bpe sentencepiece` encodes the
input with `--sentencepiece-model` and joins pieces on output (fairseq's `post_process`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s2s_jax.data.imported_tokenizers import FairseqTokenizer
from s2s_jax.errors import UserError
from s2s_jax.importers import Imported
from s2s_jax.importers.fairseq_dict import read_dict
from s2s_jax.importers.weights import CheckpointError, load_torch_pickle, plain


def checkpoint_args(ckpt: Any, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model settings, task settings) of a loaded fairseq checkpoint, plain dicts."""
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{source}: not a fairseq checkpoint (a dict with a 'model' state dict)")
    args = plain(ckpt.get("args"))
    cfg = plain(ckpt.get("cfg")) or {}
    model = args if isinstance(args, dict) and args else cfg.get("model")
    task = args if isinstance(args, dict) and args else cfg.get("task") or {}
    if not isinstance(model, dict) or not model:
        raise CheckpointError(f"{source}: has neither 'args' nor 'cfg.model': the model's settings are unknown")
    return model, task if isinstance(task, dict) else {}


def read_fairseq(path: str | Path, *, dict_dir: str | Path | None = None, source_lang: str | None = None,
                 target_lang: str | None = None, bpe: str = "none",
                 sentencepiece_model: str | Path | None = None) -> Imported:
    """Config, checked weights, tokenizers and vocabularies of a fairseq transformer / fconv checkpoint."""
    from s2s_jax.importers import fairseq_fconv, fairseq_transformer

    path = Path(path)
    source = str(path)
    ckpt = load_torch_pickle(path)
    args, task = checkpoint_args(ckpt, source)
    arch = str(args.get("arch") or args.get("_name") or "")
    state = ckpt["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: 'model' is not a state dict")
    src_lang = source_lang or task.get("source_lang") or args.get("source_lang")
    tgt_lang = target_lang or task.get("target_lang") or args.get("target_lang")
    if not src_lang or not tgt_lang:
        raise UserError(f"{source} does not say its languages: give --source-lang and --target-lang (the SRC, TGT "
                        "of dict.SRC.txt, dict.TGT.txt)")
    folder = Path(dict_dir) if dict_dir else path.parent
    src_dict, tgt_dict = read_dict(folder / f"dict.{src_lang}.txt"), read_dict(folder / f"dict.{tgt_lang}.txt")
    if arch in fairseq_transformer.ARCHS:
        reader, preset = fairseq_transformer, "marian"
    elif arch in fairseq_fconv.ARCHS:
        reader, preset = fairseq_fconv, "convs2s"
    else:
        known = sorted(fairseq_transformer.ARCHS) + sorted(fairseq_fconv.ARCHS)
        raise CheckpointError(f"{source}: arch {arch!r} is not supported (wrong arch); known: {', '.join(known)}")
    cfg, weights = reader.convert(arch, args, state, src_dict.vocab, tgt_dict.vocab, source)
    proto = None
    if bpe == "sentencepiece":
        if not sentencepiece_model:
            raise UserError("--bpe sentencepiece needs --sentencepiece-model FILE")
        try:
            proto = Path(sentencepiece_model).read_bytes()
        except OSError as e:
            raise UserError(f"--sentencepiece-model {sentencepiece_model}: {e.strerror}") from None
    return Imported(cfg=cfg, state_dict=weights, src_tok=FairseqTokenizer("source", bpe, proto),
                    tgt_tok=FairseqTokenizer("target", bpe, proto), src_vocab=src_dict.vocab,
                    tgt_vocab=tgt_dict.vocab, preset=preset, source=source)
