"""Line handling both command lines share (`s2s-jax translate` and `python -m export.runtime`), standard library
only: the runtime imports neither JAX nor s2s_jax (whose package imports JAX), and `s2s_jax.cli` may load
`export` lazily, so the one copy lives here."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any


def stdin_batches(stream: Any, batch_size: int) -> Iterator[list[str]]:
    """Non-blank lines of `stream` in batches of what has arrived (at most `batch_size`): a pipe gives full
    batches, a terminal each answer as soon as its line is in. A reader thread does the blocking reads."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        try:
            for line in stream:
                lines.put(line.rstrip("\r\n"))
        finally:
            lines.put(None)

    threading.Thread(target=read, daemon=True, name="stdin").start()
    ended = False
    while not ended:
        batch = []
        line = lines.get()
        while line is not None:
            if line.strip():
                batch.append(line.strip())
            if len(batch) >= batch_size:
                break
            try:
                line = lines.get(block=not batch)
            except queue.Empty:
                break
        ended = line is None
        if batch:
            yield batch


def one_line(message: object) -> str:
    """`message` with every character that breaks a line escaped (an input echoed in an error may hold any)."""
    return "".join(c if len((c + "x").splitlines()) == 1 else repr(c)[1:-1] for c in str(message))


def split_prefixes(lines: list[str]) -> tuple[list[str], list[str] | None]:
    """INPUT<TAB>PREFIX lines -> (inputs, prefixes): the target text after the first tab of a line starts its
    output (CTranslate2's target_prefix); None when no line has a tab."""
    if not any("\t" in line for line in lines):
        return lines, None
    parts = [line.split("\t", 1) for line in lines]
    return [p[0].strip() for p in parts], [p[1].strip() if len(p) > 1 else "" for p in parts]


def paired_prefixes(path: str, lines: list[str], inputs: int) -> list[str]:
    """The prefixes of `--prefix-file path` (its `lines`, one per input, empty: none), or ValueError when the
    counts differ (each command line turns it into its one-line error)."""
    if len(lines) != inputs:
        raise ValueError(f"--prefix-file {path} has {len(lines)} lines for {inputs} inputs; give one prefix line "
                         "per input (an empty line: no prefix)")
    return [line.strip() for line in lines]


def answer_line(text: str, hyps: list[dict[str, Any]], form: str, *, scores: bool = False,
                alignment: bool = False) -> str:
    """One input's output line: JSON (`form` "jsonl": input, hypotheses [{text, score[, tokens, token_scores]
    [, alignment]}]) or plain text (the hypotheses tab-separated, each `score<TAB>text` with `scores`, and its
    Pharaoh alignment `SRC-TGT ...` after a tab with `alignment`). `hyps`: dicts with those keys."""
    if form == "jsonl":
        out = []
        for h in hyps:
            item = {"text": h["text"], "score": round(h["score"], 6)}
            if scores:
                item.update(tokens=h["tokens"], token_scores=[round(x, 6) for x in h["token_scores"]])
            if alignment:
                item["alignment"] = h["alignment"]
            out.append(item)
        return json.dumps({"input": text, "hypotheses": out}, ensure_ascii=False)
    fields = []
    for h in hyps:
        fields += ([f"{h['score']:.6f}"] if scores else []) + [h["text"]]
        if alignment:
            fields.append(" ".join(f"{s}-{t}" for t, s in enumerate(h["alignment"])))
    return "\t".join(fields)
