"""The device mesh ("data", "fsdp", "tensor") and multi-host start-up."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from r2r_jax.config import MeshConfig
from r2r_jax.parallel.rules import MESH_AXES


def make_mesh(cfg: MeshConfig, devices: list | None = None) -> Mesh:
    """A mesh over all devices (of every host) with axis sizes from the config (-1 = the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = cfg.shape(len(devices))
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    except Exception:  # topologies mesh_utils does not know (fake CPU devices, odd shapes)
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def maybe_initialize_distributed() -> bool:
    """Start JAX's multi-controller runtime when the environment describes a multi-host job.

    Recognised: an explicit coordinator (R2R_COORDINATOR, R2R_NUM_PROCESSES, R2R_PROCESS_ID), SLURM
    (jax detects it), and TPU pods (`launch/tpu_pod.sh` sets R2R_DISTRIBUTED=1).
    Returns whether initialisation happened."""
    if jax.distributed.is_initialized():
        return True
    if "R2R_COORDINATOR" in os.environ:
        if os.environ.get("JAX_PLATFORMS", "") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=os.environ["R2R_COORDINATOR"],
            num_processes=int(os.environ["R2R_NUM_PROCESSES"]),
            process_id=int(os.environ["R2R_PROCESS_ID"]),
        )
        return True
    # R2R_DISTRIBUTED=1: TPU VMs, where jax reads the slice from the VM metadata. (TPU_WORKER_HOSTNAMES is no
    # signal: libtpu's import may set it to a warning text on machines without TPUs.)
    if os.environ.get("R2R_DISTRIBUTED") == "1" or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
        return True
    return False
