"""DESIGN.md's import rules, held by importing every module with the forbidden packages made unimportable.

One fresh interpreter per rule (all four run at once): a `sys.meta_path` finder
raises ImportError for the forbidden names (a top-level package, or a prefix
such as `s2s_jax.data` and everything under it), then every module the rule
covers is imported. A module that catches the ImportError (an optional
dependency) passes; one whose import fails is reported with the chain of
repository lines that led to the blocked import.

- no_torch: every s2s_jax module outside s2s_jax.cli imports without torch, torch_ref or export.
- decoding_knows_no_task: s2s_jax.decoding imports nothing from s2s_jax.data.
- data_knows_no_model: s2s_jax.data imports nothing from s2s_jax.layers or s2s_jax.models.
- runtime_is_numpy_only: export.runtime (and its CLI, export.ort_step, export.search, export.text, the CTranslate2
  front end) imports neither jax nor torch
  (tests/export/test_runtime_isolation.py runs the runtime CLI so isolated end to end).

For the layer rules the checked package's ancestors (`s2s_jax`, a facade that
imports models) are imported first, unblocked; every other module under the
root is then dropped from sys.modules, so the checked modules import their
dependencies afresh, under the blocker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
JAX_AND_TORCH = ("jax", "jaxlib", "flax", "optax", "orbax", "torch", "torch_ref", "s2s_jax")


class Rule(NamedTuple):
    packages: tuple[str, ...]  # every module in these packages (recursively) is imported
    blocked: tuple[str, ...]  # names (and their submodules) that may not be imported
    exclude: tuple[str, ...] = ()  # modules (and their submodules) the rule does not cover
    preload: bool = False  # import the packages' ancestors before blocking (see the module docstring)


RULES = {
    "no_torch": Rule(("s2s_jax",), ("torch", "torch_ref", "export"), exclude=("s2s_jax.cli",)),
    "decoding_knows_no_task": Rule(("s2s_jax.decoding",), ("s2s_jax.data",), preload=True),
    "data_knows_no_model": Rule(("s2s_jax.data",), ("s2s_jax.layers", "s2s_jax.models"), preload=True),
    "runtime_is_numpy_only": Rule(("export.runtime", "export.runtime_cli", "export.ort_step", "export.search",
                                   "export.text", "export.ctranslate2_runtime"), JAX_AND_TORCH),
}

# Runs in a fresh interpreter: argv[1] is the rule as JSON; prints {"checked": [...], "failures": {...}}.
CHECKER = r'''
import importlib, importlib.abc, json, os, pkgutil, sys, traceback

rule = json.loads(sys.argv[1])
repo = os.getcwd()


def under(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class Blocked(ImportError):
    pass


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if not under(name, rule["blocked"]):
            return None
        chain = [f"{os.path.relpath(f.filename, repo)}:{f.lineno}" + ("" if f.name == "<module>" else f" ({f.name})")
                 for f in traceback.extract_stack()[:-1]
                 if f.filename.startswith(repo) and "site-packages" not in f.filename]
        raise Blocked(f"import of {name} is blocked", name=name, path=" -> ".join(chain))


def modules(package):
    """`package` and every module below it, found on disk (nothing is imported to list them)."""
    root = os.path.join(repo, *package.split("."))
    if not os.path.isdir(root):
        return [package]
    found = [package]
    for info in pkgutil.iter_modules([root]):
        name = f"{package}.{info.name}"
        found.extend(modules(name) if info.ispkg else [name])
    return found


def blocked_cause(error):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Blocked):
            return error
        error = error.__cause__ or error.__context__
    return None


names = [m for p in rule["packages"] for m in modules(p)
         if not under(m, rule["exclude"]) and not m.endswith("__main__")]
ancestors = sorted({".".join(p.split(".")[:i]) for p in rule["packages"] for i in range(1, p.count(".") + 1)})
if rule["preload"]:
    for name in ancestors:
        importlib.import_module(name)
    roots = {p.split(".")[0] for p in rule["packages"]}
    for name in list(sys.modules):
        if (name.split(".")[0] in roots and name not in ancestors) or under(name, rule["blocked"]):
            del sys.modules[name]

sys.meta_path.insert(0, Blocker())
failures = {}
probe = rule["blocked"][0]
try:
    importlib.import_module(probe)
    failures["<blocker>"] = {"error": f"importing {probe} was not blocked"}
except Blocked:
    pass
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as error:  # noqa: BLE001 - every failure is reported, not raised
        cause = blocked_cause(error)
        if cause is not None:
            failures[name] = {"blocked": cause.name, "chain": cause.path}
        else:
            failures[name] = {"error": f"{type(error).__name__}: {error}"}
print(json.dumps({"checked": names, "failures": failures}))
'''


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    """Every rule's check, run in parallel subprocesses; {rule: parsed output, or the process's error}."""
    procs = {
        name: subprocess.Popen([sys.executable, "-c", CHECKER, json.dumps(rule._asdict())], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, rule in RULES.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        lines = stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            out[name] = {"checked": [], "failures": {"<checker>": {"error": stderr[-2000:]}}}
        else:
            out[name] = json.loads(lines[-1])
    return out


def describe(failures: dict[str, dict[str, str]]) -> str:
    lines = []
    for module, f in sorted(failures.items()):
        if "blocked" in f:
            lines.append(f"  {module}: imports {f['blocked']} via {f['chain'] or '?'}")
        else:
            lines.append(f"  {module}: does not import at all: {f['error']}")
    return "\n".join(lines)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_import_rule(results, rule):
    result = results[rule]
    failures = result["failures"]
    assert not failures, f"{rule}: {len(failures)} module(s) break the rule\n{describe(failures)}"
    assert result["checked"], f"{rule}: no modules found to check"
