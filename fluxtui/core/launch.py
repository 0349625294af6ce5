"""Build the trainer's command line from `[hardware]`: one process or `accelerate launch`.

One process, no accelerate config: `python -m fluxtui.trainer WORKSPACE --run ID`.
Anything more (several processes, several machines, a DeepSpeed/FSDP config file) goes
through `python -m accelerate.commands.launch ... -m fluxtui.trainer ...`, so the same
interpreter and venv run every rank. Arguments are always a list, never a shell string.

On a machine without GPUs, several processes need `--multi_gpu` plus ACCELERATE_USE_CPU=true
to get real gloo ranks: `--cpu --num_processes 2` silently runs ONE process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import gpu

TRAINER_MODULE = "fluxtui.trainer"
# A different trainer module (tests use a scripted fake one); must take the same arguments.
TRAINER_ENV = "FLUXTUI_TRAINER_MODULE"


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment
    num_processes: int = 1
    uses_accelerate: bool = False
    notes: list[str] = field(default_factory=list)  # how "auto" etc. were resolved, for the log

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        return env


def trainer_args(
    workspace: Path, run_id: str, *, fresh: bool = False, resume: str | Path | None = None, max_steps: int | None = None
) -> list[str]:
    args = [str(workspace), "--run", run_id]
    if fresh:
        args.append("--fresh")
    if resume is not None:
        args += ["--resume", str(resume)]
    if max_steps is not None:
        args += ["--max-steps", str(int(max_steps))]
    return args


def build(
    hardware,
    workspace: Path,
    run_id: str,
    *,
    fresh: bool = False,
    resume: str | Path | None = None,
    max_steps: int | None = None,
    mixed_precision: str | None = None,
    gpu_count: int | None = None,
    python: str | None = None,
    base_env: dict[str, str] | None = None,
) -> Launch:
    """The command for a run. `hardware` is the project's [hardware] section (attributes
    num_processes, gpu_ids, num_machines, machine_rank, main_process_ip, main_process_port,
    accelerate_config). `gpu_count` overrides GPU detection (tests; None asks NVML)."""
    python = python or sys.executable
    base_env = dict(os.environ if base_env is None else base_env)
    module = base_env.get(TRAINER_ENV) or TRAINER_MODULE
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    notes: list[str] = []

    gpu_ids = list(getattr(hardware, "gpu_ids", None) or [])
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
    if gpu_count is None:
        gpu_count = gpu.visible_count({**base_env, **env})
    elif gpu_ids:
        gpu_count = min(gpu_count, len(gpu_ids))

    num_machines = int(getattr(hardware, "num_machines", 1) or 1)
    requested = getattr(hardware, "num_processes", "auto")
    if requested == "auto":
        per_machine = max(gpu_count, 1)
        num_processes = per_machine * num_machines
        where = f"{gpu_count} visible GPU(s)" if gpu_count else "no GPU"
        notes.append(f"num_processes auto -> {num_processes} ({where}, {num_machines} machine(s))")
    else:
        num_processes = int(requested)

    accelerate_config = getattr(hardware, "accelerate_config", None)
    if accelerate_config:
        accelerate_config = Path(accelerate_config).expanduser()
        if not accelerate_config.is_absolute():
            accelerate_config = Path(workspace) / accelerate_config

    targs = trainer_args(workspace, run_id, fresh=fresh, resume=resume, max_steps=max_steps)
    if num_processes == 1 and num_machines == 1 and not accelerate_config:
        return Launch([python, "-m", module, *targs], env, 1, False, notes)

    argv = [python, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        argv += ["--config_file", str(accelerate_config)]
    argv += ["--num_processes", str(num_processes), "--num_machines", str(num_machines)]
    if num_machines > 1:
        argv += [
            "--machine_rank",
            str(int(getattr(hardware, "machine_rank", 0))),
            "--main_process_ip",
            str(getattr(hardware, "main_process_ip", "127.0.0.1")),
            "--main_process_port",
            str(int(getattr(hardware, "main_process_port", 29500))),
        ]
    elif num_processes > 1:
        # one machine: still pin the port so two workspaces can use different ones
        argv += ["--main_process_port", str(int(getattr(hardware, "main_process_port", 29500)))]
    if gpu_count == 0:
        # CPU ranks: --multi_gpu with ACCELERATE_USE_CPU gives gloo; --cpu alone gives one process.
        env["ACCELERATE_USE_CPU"] = "true"
        mixed_precision = "no"
        if accelerate_config is None:
            notes.append("no GPU: CPU processes over gloo")
    if not accelerate_config and (num_processes > 1 or num_machines > 1):
        argv.append("--multi_gpu")
    if not accelerate_config:
        # explicit values keep accelerate from printing a "defaults were used" warning
        argv += ["--dynamo_backend", "no"]
        if mixed_precision:
            argv += ["--mixed_precision", mixed_precision]
    argv += ["-m", module, *targs]
    return Launch(argv, env, num_processes, True, notes)


def for_project(project, workspace: Path, run_id: str, **kw) -> Launch:
    """`build` from a loaded Project."""
    return build(
        project.hardware,
        workspace,
        run_id,
        mixed_precision=getattr(project.training, "mixed_precision", None),
        **kw,
    )
