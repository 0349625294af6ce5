"""Memory options: offload, tiling and their conflicts."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from .base import (
    problem_at,
    rule,
    visible_gpu_count,
)


@rule
def _offload(p: Project) -> list[Problem]:
    m = p.memory
    out = []
    if m.enable_group_offload and m.enable_model_cpu_offload:
        out.append(
            problem_at(
                p,
                "enable_model_cpu_offload and enable_group_offload cannot be used together",
                "memory.enable_model_cpu_offload",
                also=("memory.enable_group_offload",),
                fix="set enable_model_cpu_offload = false (group offload saves more VRAM during training)",
            )
        )
    if m.group_offload_use_stream and not m.enable_group_offload:
        out.append(
            problem_at(
                p,
                "group_offload_use_stream has no effect without enable_group_offload",
                "memory.group_offload_use_stream",
                severity="warning",
                fix="set enable_group_offload = true, or remove group_offload_use_stream",
            )
        )
    elif m.group_offload_use_stream and visible_gpu_count() == 0:
        out.append(
            problem_at(
                p,
                "group_offload_use_stream needs CUDA; no GPU is visible, so it will be ignored",
                "memory.group_offload_use_stream",
                severity="warning",
                fix="fine on a CPU test run; on the GPU machine it takes effect",
            )
        )
    if m.group_offload_to_disk_path and not m.enable_group_offload:
        out.append(
            problem_at(
                p,
                "group_offload_to_disk_path has no effect without enable_group_offload",
                "memory.group_offload_to_disk_path",
                severity="warning",
                fix="set enable_group_offload = true, or remove group_offload_to_disk_path",
            )
        )
    return out


@rule
def _system_ram(p: Project) -> list[Problem]:
    """The run's RAM peak (core/estimate_ram.py) against this machine's RAM."""
    from ..estimate import estimate

    try:
        est = estimate(p)
    except Exception:  # an estimate that cannot be made is no reason to stop a run
        return []
    if est.machine is None or est.ram_fits() is not False:
        return []
    stage = est.ram_peak_stage
    cpu = p.model.quantize_via == "cpu"
    fixes = []
    if cpu:
        fixes.append('quantize_via = "accelerator" (quantises block by block on the GPU, no copy in RAM)')
    fixes.append("load a smaller (pre-quantised) transformer")
    fixes.append(f"or a machine (or swap) with more than {est.ram_gib:.0f} GiB of RAM")
    return [
        problem_at(
            p,
            f"the run needs ~{est.ram_gib:.1f} GiB of system RAM at its peak ({stage}), "
            f"but this machine has {est.machine.total_gib:.1f} GiB ({est.machine.source})",
            "model.quantize_via",
            severity="warning",
            fix="; ".join(fixes),
        )
    ]
