"""Test-facing names for the shared contract checks (one code path with `s2s-jax parity`), and small input
makers the test files share."""

from __future__ import annotations

import numpy as np

from s2s_jax.checks import (  # noqa: F401
    GRAD_RTOL,
    LOGIT_ATOL,
    check_padding_invariant,
    check_shared_encoder_step,
    check_step_equals_full,
    init_params,
    logits_of,
    random_batch,
)
from s2s_jax.checks import logits_of as flax_logits  # noqa: F401
from s2s_jax.config import ModelConfig
from torch_ref.parity import check_parity, check_torch_step_equals_full, torch_logits  # noqa: F401


def search_beams(cfg, params, batch, *, max_len: int, beam: int = 3, alpha: float = 0.6, shrink_rows: int = 0):
    """Encode `batch` and beam-search it with the config's special ids (for comparing search variants; the
    family's hooks are read from its record at each call, so a test may patch the record)."""
    from s2s_jax import build_model
    from s2s_jax.decoding.search import decode_source

    return decode_source(build_model(cfg), params, batch["src"], batch["src_lengths"], beam=beam, max_len=max_len,
                         alpha=alpha, shrink_rows=shrink_rows)


def random_src(cfg: ModelConfig, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids [batch, length] without specials, the first row full length, the others ragged."""
    rng = np.random.default_rng(seed)
    pool = np.array([i for i in range(cfg.src_vocab_size) if i not in {cfg.pad_id, cfg.bos_id, cfg.eos_id}])
    lengths = np.concatenate([[length], rng.integers(1, length + 1, batch - 1)]).astype(np.int32)
    src = rng.choice(pool, (batch, length)).astype(np.int32)
    src[np.arange(length)[None, :] >= lengths[:, None]] = cfg.pad_id
    return src, lengths


def tensorboard_curve(directory, tag: str) -> list[tuple[int, float]]:
    """(step, value) of scalar `tag` as TensorBoard shows it: every event file of `directory` in the order they
    were written, a SessionLog START at step s dropping the earlier points at steps >= s (what a resumed run's
    writer asks for). Decoded with tensorboardX's protobuf classes, independently of s2s_jax's encoder; the
    records are read up to the last complete one, as TensorBoard reads a file a killed writer left."""
    import struct
    from pathlib import Path

    from tensorboardX.proto import event_pb2

    def records(path):
        data, out = path.read_bytes(), []
        while len(data) >= 16:
            (n,) = struct.unpack("<Q", data[:8])
            if len(data) < 16 + n:
                break
            out.append(event_pb2.Event.FromString(data[12 : 12 + n]))
            data = data[16 + n :]
        return out

    files = [records(p) for p in Path(directory).glob("events.out.tfevents.*")]
    points: dict[int, float] = {}
    for events in sorted(files, key=lambda ev: ev[0].wall_time if ev else 0.0):
        for e in events:
            if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START:
                points = {s: v for s, v in points.items() if s < e.step}
            for value in e.summary.value:
                if value.tag == tag:
                    points[e.step] = value.simple_value
    return sorted(points.items())
