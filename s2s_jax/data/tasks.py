"""Registry of trainable seq2seq tasks, and the interface the training loop relies on.

A task provides (see `AdditionTask` for the reference):
- `name`, `settings()` -> JSON-able dict with "name" (saved in config.json; `build_task(**settings)` rebuilds it),
- `src_vocab`, `tgt_vocab` (`Vocab`), `max_decode_len`,
- `train_batch(step, batch_size)` and `heldout_batch()` -> dicts of int32 arrays
  `src [B,S]`, `src_lengths [B]`, `tgt_in [B,T]`, `tgt_out [B,T]`, `tgt_lengths [B]`
  (tgt_out ends with eos within tgt_lengths; the loss mask comes from tgt_lengths),
- `encode_inputs(texts)` -> (src, src_lengths), `decode_output(ids)` / `decode_input(ids)` -> str.
"""

from __future__ import annotations

from typing import Any

from s2s_jax.data.addition import AdditionTask
from s2s_jax.data.translation import TranslationTask
from s2s_jax.errors import UserError

TASKS: dict[str, type] = {"addition": AdditionTask, "translation": TranslationTask}


def build_task(name: str, **settings: Any) -> Any:
    """The task `name` with `settings` (the dict a task's `settings()` returned, minus "name")."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    try:
        return TASKS[name](**settings)
    except TypeError as e:
        raise UserError(f"task {name!r}: bad settings {settings}: {e}") from None
