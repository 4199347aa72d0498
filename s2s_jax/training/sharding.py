"""Data parallel training over a `jax.sharding.Mesh`, on one process or several (`jax.distributed`).

One mesh axis, `data`, over every device of every process. The batch is sharded
on it (rows split evenly over the devices); parameters and optimizer state are
replicated, or with `shard_params` split along their first axis (ZeRO/FSDP
style: each device holds 1/n of every matrix, XLA gathers what a step needs).
The jitted step is one global program: gradients are summed over the whole
batch by XLA's collectives, so the update is the single-device update.

Multi-process: every process runs the same program. Process p contributes the
rows of the global batch that its own devices hold (`local_rows`), and
`jax.make_array_from_process_local_data` assembles the global array; batches
are a pure function of (seed, step), so each process can compute its rows
without talking to the others.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from s2s_jax.errors import UserError

AXIS = "data"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> None:
    """`jax.distributed.initialize` before anything touches a device. With no arguments JAX detects the cluster
    (SLURM, Open MPI, TPU pods). CPU devices reach each other through gloo (the setting only concerns the
    CPU backend; GPUs and TPUs use their own interconnect)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"could not join the distributed run ({str(e).splitlines()[0]}); check --coordinator, "
                        "--num-processes and --process-id") from None


def is_primary() -> bool:
    """Process 0 writes files (config, manifest, logs); the others only compute and save their shards."""
    return jax.process_index() == 0


def make_mesh() -> Mesh:
    """A 1-D `data` mesh over all devices (all processes), in device-id order so each process's devices are
    contiguous."""
    return Mesh(np.array(sorted(jax.devices(), key=lambda d: d.id)), (AXIS,))


def check_batch(batch_size: int, grad_accum: int, mesh: Mesh) -> None:
    """Each micro-batch's rows must split evenly over the devices."""
    n = mesh.size
    if batch_size % (n * grad_accum):
        raise UserError(f"batch_size={batch_size} must be divisible by devices ({n}) x grad_accum ({grad_accum}) "
                        f"= {n * grad_accum}; choose a batch size that is a multiple of it")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _param_spec(x: Any, n: int, shard: bool) -> P:
    if shard and getattr(x, "ndim", 0) >= 2 and x.shape[0] % n == 0:
        return P(AXIS)
    return P()


def state_sharding(state: Any, mesh: Mesh, shard_params: bool = False) -> Any:
    """A sharding per leaf of the train state: replicated, or matrices split along axis 0 with `shard_params`
    (optimizer moments follow their parameters because they have the same shapes)."""
    return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(x, mesh.size, shard_params)), state)


def place(tree: Any, shardings: Any) -> Any:
    """Put a host-built tree (identical on every process) onto the mesh."""
    def put(x: Any, s: NamedSharding) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])

    return jax.tree.map(put, tree, shardings)


def local_rows(global_rows: int, sharding: NamedSharding) -> slice:
    """The rows of a [global_rows, ...] batch this process's devices hold (a contiguous block)."""
    idx = sharding.addressable_devices_indices_map((global_rows,)).values()
    starts = [i[0].start or 0 for i in idx]
    stops = [global_rows if i[0].stop is None else i[0].stop for i in idx]
    return slice(min(starts), max(stops))


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """The global batch as arrays sharded on `data`; each process passes only its own rows to the devices."""
    rows = local_rows(len(batch["src"]), sharding)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)[rows], v.shape)
            for k, v in batch.items()}


def to_host(tree: Any) -> Any:
    """Numpy copy of a tree of global arrays on every process (gathered across processes when sharded)."""
    if all(x.is_fully_addressable or x.is_fully_replicated for x in jax.tree.leaves(tree)):
        return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def agree(flag: bool) -> bool:
    """Process 0's value of `flag` on every process (wall-clock decisions must not differ between processes)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def barrier(name: str) -> None:
    """Wait until every process gets here (no-op on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
