"""Processes, GPUs and machines."""

from __future__ import annotations

import math
import platform
import sys

from ..config import Project
from ..problems import Problem
from .base import (
    problem_at,
    rule,
    visible_gpu_count,
)


@rule
def _hardware(p: Project) -> list[Problem]:
    hw = p.hardware
    out = []
    if hw.accelerate_config and not p.resolve(hw.accelerate_config).is_file():
        out.append(
            problem_at(
                p,
                f"accelerate_config file {hw.accelerate_config} does not exist",
                "hardware.accelerate_config",
                fix="run `accelerate config --config_file accelerate.yaml` in the workspace, or remove the key",
            )
        )
    if hw.machine_rank >= hw.num_machines:
        out.append(
            problem_at(
                p,
                f"machine_rank {hw.machine_rank} with num_machines = {hw.num_machines}",
                "hardware.machine_rank",
                fix=f"use a machine_rank from 0 to {hw.num_machines - 1}",
            )
        )
    if hw.num_processes != "auto":
        if hw.num_processes < hw.num_machines:
            out.append(
                problem_at(
                    p,
                    f"num_processes ({hw.num_processes}) is the total over all machines; it is below "
                    f"num_machines ({hw.num_machines})",
                    "hardware.num_processes",
                    fix=f'set num_processes to at least {hw.num_machines}, or "auto"',
                )
            )
        per_machine = math.ceil(hw.num_processes / max(1, hw.num_machines))
        gpus = len(hw.gpu_ids) if hw.gpu_ids else visible_gpu_count()
        if gpus and per_machine > gpus:
            out.append(
                problem_at(
                    p,
                    f"num_processes = {hw.num_processes} but only {gpus} GPU(s) are "
                    + ("listed in gpu_ids" if hw.gpu_ids else "visible"),
                    "hardware.num_processes",
                    severity="warning",
                    fix=f'set num_processes = {gpus * hw.num_machines} or "auto"',
                )
            )
    return out


@rule
def _no_cuda(p: Project) -> list[Problem]:
    """A full-size flavour without a CUDA GPU would train on the CPU: days per epoch."""
    if p.model.model_flavour == "tiny-random" or visible_gpu_count():
        return []
    if sys.platform == "darwin" and platform.machine() == "arm64":
        why = "Apple GPUs (MPS) cannot train Flux (as SimpleTuner's quickstart says), so it would train on the CPU"
    else:
        why = "no CUDA GPU is visible, so it would train on the CPU (minutes per step, ~50 GB of RAM)"
    return [
        problem_at(
            p,
            f'model_flavour = "{p.model.model_flavour}" is the full-size Flux: {why}',
            "model.model_flavour",
            severity="warning",
            fix="run on a machine with an NVIDIA GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES), or use "
            'model_flavour = "tiny-random" to try fluxtui out',
        )
    ]
