"""The one `--set` parser: "section.key=value" texts typed like the run config's fields.

`train --set`, `parity --set` and the benchmarks all come through here, so a value
is typed one way everywhere: like the field's current value (or its annotation
when that is None), booleans as true/false, lists comma-separated. A bare key
means `model.key`. Every mistake is a `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.run.config import SECTIONS, RunConfig, check_section_keys, thaw


def parse_value(key: str, text: str, like: Any, annotation: Any = None) -> Any:
    """Convert `text` to the type of `like` (the field's current value), or its annotation when that is None."""
    if like is None and annotation is not None:
        if text.lower() in ("none", "null"):
            return None
        like = _example_of(annotation)
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--set {key}={text}: expected true or false")
    if isinstance(like, list | tuple):
        try:
            return [type(like[0])(x) if like else _number(x) for x in text.split(",")] if text else []
        except ValueError:
            raise ConfigError(f"--set {key}={text}: expected a comma-separated list") from None
    if like is None:
        return _number(text)
    try:
        return type(like)(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {type(like).__name__}") from None


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _example_of(annotation: Any) -> Any:
    """A value of the first non-None type in an `X | None` annotation (string annotations included)."""
    if isinstance(annotation, str):
        annotation = annotation.split("|")[0].strip()
        return {"int": 0, "float": 0.0, "bool": False, "str": ""}.get(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if isinstance(
        annotation, types.UnionType) else [annotation]
    return {int: 0, float: 0.0, bool: False, str: ""}.get(args[0] if args else None)


def split_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """["hid_dim=64", "optimizer.lr=1e-3"] -> {"model": {"hid_dim": "64"}, "optimizer": {"lr": "1e-3"}} (still text)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value or section.key=value")
        section, dot, name = key.rpartition(".")
        section = section if dot else "model"
        if section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[name] = text
    return out


def model_overrides(texts: Mapping[str, str]) -> dict[str, Any]:
    """Text model overrides ({"hid_dim": "64"}) typed like ModelConfig's defaults (unknown keys list the valid ones);
    the model section of `train --set`."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    check_section_keys("model", texts, list(defaults))
    return {k: parse_value(k, v, defaults[k]) for k, v in texts.items()}


def typed_overrides(run: RunConfig, section: str, texts: Mapping[str, str]) -> dict[str, Any]:
    """Text values of `section` typed like the run's current values (unknown keys list the valid ones)."""
    if section == "data":
        current = dict(run.data.settings)
        check_section_keys("data", texts, list(current))
        return {k: parse_value(f"data.{k}", v, thaw(current[k])) for k, v in texts.items()}
    obj = getattr(run, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    check_section_keys(section, texts, list(fields))
    return {k: parse_value(f"{section}.{k}", v, getattr(obj, k), fields[k].type) for k, v in texts.items()}


def parse_model_sets(items: Sequence[str]) -> dict[str, Any]:
    """`--set` items that may only name model keys (`parity`, the benchmarks): ["hid_dim=64", "model.cell=lstm"] ->
    {"hid_dim": 64, "cell": "lstm"}; another section is an error naming the valid use."""
    split = split_overrides(items)
    others = sorted(set(split) - {"model"})
    if others:
        raise ConfigError(f"--set: only model keys apply here, not section(s) {others}")
    return model_overrides(split.get("model", {}))
