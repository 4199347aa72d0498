"""Corpus BLEU and chrF with sacreBLEU on detokenized output, and the `evaluate` entry point's files.

Hypotheses are compared with the dataset's own reference text. For data that is
already tokenized (Multi30k `lc.norm.tok`) sacreBLEU must not tokenize again:
`tokenize="none"`; raw text gets sacreBLEU's standard `13a`. When the model was
trained lowercased, BLEU is case-insensitive (said in the result's signature).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s2s_jax.errors import UserError
from s2s_jax.run.config import DecodeOptions
from s2s_jax.training.logs import progress_bar


def corpus_scores(hypotheses: list[str], references: list[str], *, pretokenized: bool,
                  lowercase: bool = False) -> dict[str, Any]:
    """{"bleu", "chrf", "bleu_signature", "chrf_signature", ...} for aligned hypothesis/reference lists."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if pretokenized:  # its "you forgot to detokenize" warning is about exactly this case, which is intended here
        logging.getLogger("sacrebleu").setLevel(logging.ERROR)
    bleu = BLEU(tokenize="none" if pretokenized else "13a", lowercase=lowercase)
    chrf = CHRF(lowercase=lowercase)
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(b.score, 2), "chrf": round(c.score, 2), "bleu_precisions": [round(p, 1) for p in b.precisions],
        "brevity_penalty": round(b.bp, 3), "hyp_len": b.sys_len, "ref_len": b.ref_len,
        "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
    }


def reference_lowercase(task: Any) -> bool:
    """Whether BLEU ignores case: the model was trained on lowercased targets."""
    return bool(getattr(getattr(task, "tgt_tok", None), "lowercase", False))


def evaluate_split(
    run: Any, split: str, opts: DecodeOptions | None, out_dir: str | Path, *, batch_size: int = 64,
    limit: int | None = None, data_dir: str | None = None, manual_dir: str | None = None, log: Any = print,
    progress: bool = False, ensemble: Sequence[Any] = (),
) -> dict[str, Any]:
    """Translate `split` of the run's dataset (a `workdir.Run`; Multi30k's extra test sets are also read straight
    from the manual dir when the prepared data lacks them) and score it: see `evaluate_pairs`."""
    task = run.task
    if not hasattr(task, "read_splits"):
        raise UserError(f"the {task.name} task has no dataset splits to evaluate; train with --data")
    pairs = task.read_splits([split], data_dir=data_dir, manual_dir=manual_dir)[split]
    return evaluate_pairs(run, split, pairs, opts, out_dir, batch_size=batch_size, limit=limit, log=log,
                          progress=progress, data=task.data, ensemble=ensemble)


def read_file_pair(source: str | Path, reference: str | Path) -> tuple[str, list[tuple[str, str]]]:
    """(name, pairs) of a test set given as two aligned plain-text files (`evaluate --src F --ref F`); the name
    is the source file's, without its language suffix (newstest2014.de -> newstest2014)."""
    from s2s_jax.data.textfiles import read_parallel

    pairs = read_parallel(source, reference)
    name = Path(source).name.removesuffix(".gz")
    stem, dot, _ = name.rpartition(".")
    return (stem if dot and stem else name), pairs


def evaluate_pairs(
    run: Any, name: str, pairs: list[tuple[str, str]], opts: DecodeOptions | None, out_dir: str | Path, *,
    batch_size: int = 64, limit: int | None = None, log: Any = print, progress: bool = False, data: str = "",
    ensemble: Sequence[Any] = (),
) -> dict[str, Any]:
    """Translate the sources of `pairs`, write `{name}.{tag}.hyp` (one line per source, in order) and
    `{name}.{tag}.json` (scores and settings) under `out_dir`, and return the scores. `opts`: the decoding options
    (default: the run's decoding section); `progress`: a bar on stderr when it is a terminal; `ensemble`: more
    runs decoded with this one (`run.translate.ensemble_members`)."""
    from s2s_jax.run.translate import Translator, ensemble_members

    opts = run.config.decoding if opts is None else opts
    task = run.task
    if limit is not None and limit < 1:
        raise UserError(f"limit={limit}: give a number of sentences >= 1 (or no limit)")
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise UserError(f"{name} has no sentences to evaluate")
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    tag = f"beam{opts.beam}" if opts.method == "beam" else opts.method
    tag += f".norepeat{opts.no_repeat_ngram}" if opts.no_repeat_ngram else ""
    tag += f".ensemble{len(ensemble) + 1}" if ensemble else ""
    members = ensemble_members([run, *ensemble])
    start = time.perf_counter()
    with progress_bar(len(sources), f"{name} {tag}", "sentence", enabled=progress) as bar:
        translator = Translator(run.config.model, run.params, task, batch_size, ensemble=members)
        hypotheses = translator.translate(sources, opts, bar.update)
    seconds = time.perf_counter() - start
    pretokenized = bool(getattr(task, "pretokenized", False))
    scores = corpus_scores(hypotheses, references, pretokenized=pretokenized, lowercase=reference_lowercase(task))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hyp_path = out_dir / f"{name}.{tag}.hyp"
    hyp_path.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    result = {
        "split": name, "data": data, "sentences": len(pairs), "step": run.step,
        "decoding": {"method": opts.method, **opts.to_dict()}, **scores, "seconds": round(seconds, 2),
        "ensemble": [str(r.path) for r in ensemble],
        "sentences_per_second": round(len(pairs) / max(seconds, 1e-9), 1), "hypotheses": str(hyp_path),
    }
    (out_dir / f"{name}.{tag}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    log(f"{name} ({len(pairs)} sentences, {tag}): BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}  "
        f"[{scores['bleu_signature']}]  ({seconds:.1f}s)")
    return result
