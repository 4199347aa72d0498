"""The run config: five typed, frozen sections saved as one JSON file, so a workdir alone can reproduce its run.

    model      ModelConfig (s2s_jax.config), vocab sizes and special ids filled in from the task
    data       the task and its settings (exactly `task.settings()`; `build_task` rebuilds it)
    optimizer  OptimizerConfig (s2s_jax.training.options): optimizer, learning rate and schedule, clipping,
               label smoothing
    training   TrainConfig (s2s_jax.training.options): steps, batch, evaluation, checkpoints, precision,
               accumulation, early stopping
    decoding   DecodeOptions (s2s_jax.run.translate): how `translate`/`evaluate` decode by default

Configs are built in layers: dataclass defaults < recipe (a named training preset,
e.g. the transformer's inverse-sqrt warmup) < command-line flags < `--set
section.key=value` (parsed in `s2s_jax.run.overrides`). A bare `--set key=value`
means `model.key`. Unknown sections or keys, and bad values in any section, are
`ConfigError`s listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.training.options import BEST_METRICS, PRECISIONS, OptimizerConfig, TrainConfig, check_ints_fit

SECTIONS = ("model", "data", "optimizer", "training", "decoding")
__all__ = ["BEST_METRICS", "PRECISIONS", "DataConfig", "DecodeOptions", "OptimizerConfig", "RunConfig", "TrainConfig"]
# Keys that may differ when a run is resumed: they change neither the numbers nor the data order.
RESUMABLE = frozenset({"training.minutes", "training.log_every", "training.eval_chunk"})


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How a run translates by default; `translate` / `evaluate` flags override single fields.

    beam: 1 is greedy (argmax each step), K > 1 beam search with K beams (the search contract of
        `s2s_jax.decoding`: beam 1 means greedy there too). alpha: GNMT length penalty ((5 + len) / 6) ** alpha.
    sample: draw each token from softmax(logits / temperature), among the `top_k` most likely when top_k > 0
        and within the `top_p` nucleus when top_p < 1; `seed` fixes the draws (each sentence's from the seed and
        the sentence itself, so not from its batch). Sampling takes one hypothesis, so it needs beam 1.
    no_repeat_ngram: N > 0 never repeats an N-gram within an output (greedy, beam and sampling).
    """

    beam: int = 1
    alpha: float = 0.0
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0
    top_p: float = 1.0
    no_repeat_ngram: int = 0

    def __post_init__(self) -> None:
        check_ints_fit("decoding", self)
        if self.beam < 1:
            raise ConfigError(f"decoding: beam={self.beam} must be >= 1 (1 is greedy)")
        if not math.isfinite(self.alpha):
            raise ConfigError(f"decoding: alpha={self.alpha} must be a finite number")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"decoding: temperature={self.temperature} must be a finite number > 0")
        if self.top_k < 0:
            raise ConfigError(f"decoding: top_k={self.top_k} must be >= 0 (0: every token)")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"decoding: top_p={self.top_p} must be in (0, 1] (1: every token)")
        if self.no_repeat_ngram < 0:
            raise ConfigError(f"decoding: no_repeat_ngram={self.no_repeat_ngram} must be >= 0 (0: no blocking)")
        if self.sample and self.beam > 1:
            raise ConfigError(f"decoding: sampling takes one hypothesis; choose beam={self.beam} or sample, not both")

    @property
    def method(self) -> str:
        """greedy | beam | sample: what the options amount to (also the tag of `evaluate`'s files)."""
        return "sample" if self.sample else "beam" if self.beam > 1 else "greedy"

    def replace(self, **values: Any) -> DecodeOptions:
        """A copy with the given fields; None values leave a field as it is (flags that were not given)."""
        given = {k: v for k, v in values.items() if v is not None}
        check_section_keys("decoding", given, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DecodeOptions:
        """Also reads the section as versions before `beam=1 is greedy` wrote it ({"method": ..., "beam": 5})."""
        values = dict(values)
        method = values.pop("method", None)
        if method == "greedy":
            values["beam"] = 1
        elif method == "sample":
            values.update(sample=True, beam=1)
        return _build(cls, "decoding", values)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A task and its settings, as `task.settings()` gives them ("name" plus the task's own keys)."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> DataConfig:
        rest = {k: freeze(v) for k, v in settings.items() if k != "name"}
        return cls(name=str(settings.get("name", "")), settings=tuple(sorted(rest.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: thaw(v) for k, v in self.settings}}


def freeze(v: Any) -> Any:
    return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v


def thaw(v: Any) -> Any:
    return [thaw(x) for x in v] if isinstance(v, tuple) else v


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is: `preset` names the model preset it started from (for the record)."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainConfig = TrainConfig()
    decoding: DecodeOptions = DecodeOptions()
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "model": self.model.to_dict(), "data": self.data.to_dict(),
                "optimizer": self.optimizer.to_dict(), "training": self.training.to_dict(),
                "decoding": self.decoding.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """The inverse of `to_dict`; unknown keys are ConfigErrors (a file from another version says so)."""
        unknown = sorted(set(d) - set(SECTIONS) - {"preset"})
        if unknown:
            raise ConfigError(f"unknown run config section(s) {unknown}; valid: {', '.join(SECTIONS)}")
        missing = [s for s in SECTIONS if s not in d]
        if missing:
            raise ConfigError(f"run config lacks section(s) {missing}")
        return cls(
            model=ModelConfig.from_dict(dict(d["model"])),
            data=DataConfig.of(d["data"]),
            optimizer=_build(OptimizerConfig, "optimizer", d["optimizer"]),
            training=_build(TrainConfig, "training", d["training"]),
            decoding=DecodeOptions.from_dict(d["decoding"]),
            preset=str(d.get("preset", "")),
        )

    def replace(self, section: str, **values: Any) -> RunConfig:
        """A copy with `values` set in `section` (checked: unknown keys list the valid ones)."""
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
        if not values:
            return self
        if section == "data":
            check_section_keys("data", values, [k for k, _ in self.data.settings])
            return dataclasses.replace(self, data=DataConfig.of({**self.data.to_dict(), **values}))
        current = getattr(self, section)
        check_section_keys(section, values, [f.name for f in dataclasses.fields(current)])
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})

    def diff(self, other: RunConfig) -> list[tuple[str, Any, Any]]:
        """[(section.key, mine, theirs)] for every differing value."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _flatten(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for section, values in d.items():
        if isinstance(values, Mapping):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def check_section_keys(section: str, values: Mapping[str, Any], valid: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {section} config key(s) {unknown}; valid {section} keys: {', '.join(valid)}")


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    check_section_keys(section, values, [f.name for f in dataclasses.fields(cls)])
    return cls(**values)


# ---- recipes: named training presets ----------------------------------------------------------------------------
# A recipe sets optimizer/training/decoding values; a model preset of the same name picks its recipe by default
# (the "training intent" noted next to the preset in s2s_jax/presets.py).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # Vaswani et al. / fairseq transformer: adam(0.9, 0.98), inverse-sqrt after 4000 warmup steps, smoothing 0.1.
    "transformer": {"optimizer": {"b2": 0.98, "schedule": "inverse_sqrt", "warmup_steps": 4000, "lr": 7e-4,
                                  "label_smoothing": 0.1}},
    # fairseq fconv (seed 001): nesterov SGD, lr 0.25, momentum 0.99, clip 0.1.
    "convs2s": {"optimizer": {"name": "sgd", "lr": 0.25, "momentum": 0.99, "nesterov": True, "clip_norm": 0.1,
                              "schedule": "constant"}},
    # fairseq's tiny Transformer for Multi30k (`--preset marian`, which is fairseq's transformer too): 4+4 layers,
    # d_model 128, ffn 256, 4 heads, post-LN, fairseq positions, every embedding shared (give a joint vocabulary:
    # --tokenizer spm --spm-vocab-size 10000), dropout 0.3, label smoothing 0.1, adam (0.9, 0.98) at 5e-3 with
    # 2,000 warm-up updates then inverse sqrt, about 8k tokens a batch, 8,000 updates, the last 10 checkpoints
    # kept for `s2s-jax average --last 10`, beam 5.
    "multi30k-tiny": {
        "model": {"hid_dim": 128, "emb_dim": 128, "n_layers": 4, "n_heads": 4, "ff_dim": 256, "dropout": 0.3,
                  "positions": "fairseq", "activation": "relu", "share_embeddings": True, "tie_embeddings": True,
                  "max_len": 256},
        "optimizer": {"b2": 0.98, "lr": 5e-3, "schedule": "inverse_sqrt", "warmup_steps": 2000,
                      "label_smoothing": 0.1, "clip_norm": 0.0},
        "training": {"max_tokens": 8000, "steps": 8000, "eval_every": 1000, "checkpoint_every": 500, "keep": 10,
                     "best_metric": "bleu", "log_every": 100},
        "decoding": {"beam": 5},
    },
    # multi30k-tiny's tools at the size that two CPU cores train in two hours (bench/quality.py's
    # `multi30k-cpu` row): the marian family at the bentrevett Transformer's sizes (d_model 256, 3+3 layers,
    # 8 heads, ffn 512), post-LN, fairseq positions, every embedding shared (joint SentencePiece 8k:
    # --tokenizer spm --spm-vocab-size 8000), dropout 0.2, label smoothing 0.1, adam (0.9, 0.98) at 1e-3 after
    # 500 warm-up updates then a cosine decay to 0 at update 5,000, about 3k tokens a batch, EMA 0.999, the last
    # 10 checkpoints (one per 150 updates) kept for `s2s-jax average --last 10`, beam 5 with length penalty 1.0.
    # Sized, not tuned: two hours allowed 5,607 and 5,677 updates on the two VMs we measured, so 5,000 ends
    # inside the budget with room to spare. Until 2026-12-02 the rate fell as inverse sqrt and never reached 0:
    # the last checkpoints swung over 1-2 BLEU on validation (39.8-41.3, 40.3-42.1) and test_2016 gave 41.39
    # then 40.76 from the same recipe; a rate that ends at 0 makes the last checkpoints (and their average)
    # settle instead.
    "multi30k-cpu": {
        "model": {"hid_dim": 256, "emb_dim": 256, "n_layers": 3, "n_heads": 8, "ff_dim": 512, "dropout": 0.2,
                  "positions": "fairseq", "activation": "relu", "share_embeddings": True, "tie_embeddings": True,
                  "max_len": 256},
        "optimizer": {"b2": 0.98, "lr": 1e-3, "schedule": "cosine", "warmup_steps": 500,
                      "label_smoothing": 0.1, "clip_norm": 0.0, "ema_decay": 0.999},
        "training": {"max_tokens": 3000, "steps": 5000, "eval_every": 500, "checkpoint_every": 150, "keep": 10,
                     "best_metric": "bleu", "log_every": 100},
        # length penalty chosen on validation (beam 5, alpha 0 / 0.6 / 1.0 / 1.4: 41.29 / 41.78 / 42.12 / 42.03)
        "decoding": {"beam": 5, "alpha": 1.0},
    },
    # A few seconds on a CPU: for checking that a setup runs end to end.
    "smoke": {"training": {"steps": 20, "batch_size": 16, "eval_every": 10, "log_every": 5, "eval_chunk": 100}},
}


def recipe_for(preset: str, recipe: str | None) -> dict[str, dict[str, Any]]:
    """The recipe named `recipe`, else the one named like the model preset, else the default."""
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; available: {', '.join(sorted(RECIPES))}")
        return RECIPES[recipe]
    return RECIPES.get(preset, RECIPES["default"])
