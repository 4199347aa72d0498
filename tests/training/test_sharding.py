"""Data parallel training gives the single-device run: on a 4-device mesh (XLA's forced host devices, which must
be set before jax is imported, hence a subprocess), and with two processes joined by `jax.distributed` over gloo."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np

from s2s_jax.cli import main
from s2s_jax.run.workdir import load_run
from s2s_jax.training.logs import read_jsonl

MESH_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from jax.sharding import Mesh
    from s2s_jax.data.addition import AdditionTask
    from s2s_jax.models import build_model
    from s2s_jax.training import sharding
    from s2s_jax.run.config import OptimizerConfig
    from s2s_jax.run.train import config_for_task
    from s2s_jax.training.schedules import make_optimizer_from
    from s2s_jax.training.state import create_train_state
    from s2s_jax.training.steps import make_train_step

    assert jax.device_count() == 4, jax.devices()
    task = AdditionTask(digits=1, n_heldout=8)
    cfg = config_for_task("addition-gru", task, {"emb_dim": 8, "hid_dim": 8})
    model = build_model(cfg)
    tx, _ = make_optimizer_from(OptimizerConfig(lr=1e-2), 5)
    init = jax.tree.map(np.asarray, create_train_state(model, cfg, tx, 0, task.train_batch(0, 16)))

    def run(devices, shard_params=False, grad_accum=1):
        # what train_run does: state and batches placed on a `data` mesh, one jitted step over the mesh
        mesh = Mesh(np.array(devices), ("data",))
        state_sh = sharding.state_sharding(init, mesh, shard_params)
        state = sharding.place(init, state_sh)
        step = make_train_step(model, tx, accum_steps=grad_accum,
                               shardings=(state_sh, sharding.batch_sharding(mesh), sharding.replicated(mesh)))
        losses = []
        for i in range(1, 6):
            state, m = step(state, sharding.global_batch(task.train_batch(i, 16), sharding.batch_sharding(mesh)))
            losses.append(float(m["loss"]))
        sharded = sum(not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))
        return losses, [np.asarray(x) for x in jax.tree.leaves(state.params)], sharded

    one_losses, one_params, _ = run(jax.devices()[:1])
    out = {}
    for name, kw in [("mesh4", {}), ("mesh4_sharded_params", {"shard_params": True}),
                     ("mesh4_accum2", {"grad_accum": 2})]:
        losses, params, sharded = run(jax.devices(), **kw)
        out[name] = {"loss_diff": max(abs(a - b) for a, b in zip(losses, one_losses, strict=True)),
                     "param_diff": max(float(np.abs(a - b).max()) for a, b in zip(params, one_params, strict=True)),
                     "sharded_leaves": sharded, "steps": len(losses)}
    print("RESULT " + json.dumps(out))
""")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", **extra}


def test_four_device_mesh_equals_one_device():
    out = subprocess.run([sys.executable, "-c", MESH_SCRIPT], capture_output=True, text=True,
                         timeout=300, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    for name, r in result.items():
        assert r["steps"] == 5, name
        assert r["loss_diff"] <= 1e-5 and r["param_diff"] <= 1e-5, (name, r)
    assert result["mesh4"]["sharded_leaves"] == 0  # replicated
    assert result["mesh4_sharded_params"]["sharded_leaves"] > 0  # the embedding tables and kernels are split


ARGS = ["--preset", "addition-gru", "--digits", "1", "--steps", "5", "--batch-size", "16", "--eval-every", "0",
        "--log-every", "1", "--no-progress", "--set", "emb_dim=8", "--set", "hid_dim=8"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_equal_one(tmp_path):
    """Two CPU processes on localhost (gloo collectives), one device each, one global batch split between them,
    both saving into one workdir through orbax: the same losses and parameters as one process."""
    train = [sys.executable, "-m", "s2s_jax.cli", "train", *ARGS]
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([*train, "--workdir", str(tmp_path / "two"), "--coordinator", coordinator,
                               "--num-processes", "2", "--process-id", str(i)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert "on 2 device(s) in 2 process(es)" in outs[0][0]
    assert main(["train", *ARGS, "--workdir", str(tmp_path / "one")]) == 0  # the same run in this one process
    two_losses = [r["loss"] for r in read_jsonl(tmp_path / "two" / "train.jsonl")]
    one_losses = [r["loss"] for r in read_jsonl(tmp_path / "one" / "train.jsonl")]
    assert len(two_losses) == 5
    np.testing.assert_allclose(two_losses, one_losses, atol=1e-5, rtol=0)
    a, b = load_run(tmp_path / "two"), load_run(tmp_path / "one")
    assert a.step == b.step == 5
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
