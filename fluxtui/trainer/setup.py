"""Setup steps of the training process that are not the training itself: the frozen config
and its checks, the checkpoint to resume from, accelerate, trackers, speed and memory options,
and how failures are told.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from fluxtui.core import checkpoints as core_checkpoints
from fluxtui.core.workspace import Workspace

from .telemetry import Telemetry


class RunFailed(Exception):
    """A failure the user can fix: the message is the whole story, no traceback needed."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key


def load_config(ws: Workspace, run_dir: Path) -> Any:
    """The run's frozen config.toml (written from project.toml when the runner did not).
    Paths in it stay relative to the workspace."""
    from fluxtui.core import config

    frozen = run_dir / "config.toml"
    if not frozen.exists():
        if not ws.project_file.exists():
            raise RunFailed(f"{ws.project_file} does not exist; run `fluxtui init {ws.root}` first")
        config.atomic_write_text(frozen, ws.project_file.read_text(encoding="utf-8"))
    project, problems = config.parse(frozen.read_text(encoding="utf-8"), ws.project_file)
    errors = [p for p in problems if p.is_error]
    if project is None or errors:
        raise RunFailed(problems_text(errors or problems, frozen))
    return project


def check(project: Any) -> tuple[list[Any], list[Any]]:
    """Cross-field rules and the dataset scan: (dataset reports, warnings); errors end the run."""
    from fluxtui.core import rules

    reports, problems = rules.check_all(project)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise RunFailed(problems_text(errors, project.path), errors[0].key)
    return reports, problems


def problems_text(problems: list[Any], path: Path) -> str:
    if len(problems) == 1:
        return str(problems[0])
    return f"{len(problems)} problems in {path.name}: " + "; ".join(str(p) for p in problems)


def pick_checkpoint(ws: Workspace, project: Any, *, fresh: bool, resume: str | None) -> Any:
    if fresh:
        return core_checkpoints.ResumeChoice(None, "--fresh: starting from step 0")
    requested = resume or project.training.resume_from_checkpoint
    try:
        return core_checkpoints.pick_resume(ws.root, project, requested=requested)
    except core_checkpoints.CheckpointError as exc:
        raise RunFailed(str(exc), None if resume else "training.resume_from_checkpoint") from exc


def make_accelerator(project: Any, run_dir: Path) -> Any:
    from datetime import timedelta

    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    t = project.training
    cuda = torch.cuda.is_available()
    report_to = project.logging.report_to
    return Accelerator(
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        mixed_precision=t.mixed_precision if cuda else "no",
        cpu=not cuda,
        log_with=None if report_to == "none" else report_to,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / report_to)),
        # rank 0 may spend a long time building caches while the others wait
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=4))],
    )


def cpu_threads(project: Any, device: Any, world: int, tel: Telemetry) -> None:
    """On a CPU, torch's OpenMP threads spin against each other and against other processes:
    the toy model runs fastest on one thread, bigger ones on a fair share of the cores."""
    if getattr(device, "type", "") != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    share = max(1, (os.cpu_count() or 1) // world)
    threads = 1 if project.model.model_flavour == "tiny-random" else share
    torch.set_num_threads(threads)
    tel.log(f"CPU threads: {threads} per process (set OMP_NUM_THREADS to choose)")


def init_trackers(accelerator: Any, project: Any, run_id: str) -> None:
    report_to = project.logging.report_to
    if report_to == "none":
        return
    from .outputs import tracker_config

    name = project.logging.tracker_project_name or project.project.name
    kwargs = {"wandb": {"name": run_id, "dir": str(Path(accelerator.project_dir))}} if report_to == "wandb" else {}
    try:
        accelerator.init_trackers(name, config=tracker_config(project), init_kwargs=kwargs)
    except Exception as exc:
        raise RunFailed(f"report_to = {report_to!r}: the tracker could not start: {exc}", "logging.report_to") from exc


def resume_position(meta: dict, batch_size: int, batches_per_step: int) -> int:
    """The data position to continue from; converted when the batch geometry changed."""
    position = int(meta["data_position"])
    old_bs = int(meta.get("train_batch_size", batch_size))
    if old_bs != batch_size:
        position = position * old_bs // batch_size
    if int(meta.get("batches_per_step", batches_per_step)) != batches_per_step:
        position = int(meta["step"]) * batches_per_step
    return position


def apply_speed_and_memory_options(project: Any, transformer: Any, device: Any, tel: Telemetry) -> None:
    t, mem = project.training, project.memory
    cuda = getattr(device, "type", "") == "cuda"
    if t.attention_mechanism == "sageattention":
        if not cuda:
            tel.warning("sageattention needs a CUDA GPU; using sdpa", "training.attention_mechanism")
        else:
            try:
                transformer.set_attention_backend("sage")
            except Exception as exc:
                raise RunFailed(
                    f"attention_mechanism = sageattention could not be used: {exc}",
                    "training.attention_mechanism",
                ) from exc
    if mem.enable_group_offload:
        if not cuda:
            tel.warning("group offload moves blocks to a GPU; without one it is skipped", "memory.enable_group_offload")
        else:
            transformer.enable_group_offload(
                onload_device=device,
                offload_device=__import__("torch").device("cpu"),
                offload_type=mem.group_offload_type,
                num_blocks_per_group=mem.group_offload_blocks_per_group,
                use_stream=mem.group_offload_use_stream,
                offload_to_disk_path=str(project.resolve(mem.group_offload_to_disk_path))
                if mem.group_offload_to_disk_path
                else None,
            )
    elif mem.group_offload_use_stream and not cuda:
        tel.warning("group_offload_use_stream needs CUDA; ignored", "memory.group_offload_use_stream")
    if t.torch_compile:
        from .blocks import transformer_blocks

        for block in transformer_blocks(transformer):
            block.compile()
        tel.log("torch.compile: transformer blocks compile on first use")


def rel(path: Path, run_dir: Path) -> str:
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return str(path)


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC error behind `exc` (itself, or what it was raised from), if any."""
    import errno

    seen = exc
    for _ in range(5):
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return seen
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            return None
    return None


def describe_failure(exc: BaseException) -> tuple[str, str | None]:
    """(one-line message, traceback tail or None for failures the user can fix)."""
    from fluxtui.core.problems import ConfigError

    friendly = (RunFailed, ConfigError)
    try:
        from .blocks import RouteError
        from .models import ModelLoadError

        friendly += (ModelLoadError, RouteError)
    except ImportError:
        pass
    full = _disk_full(exc)
    if full is not None:  # the serialiser's own words ("unexpected pos ...") say nothing of disk space
        from fluxtui.core.preflight import os_error_line

        return os_error_line(full, "writing failed"), None
    if isinstance(exc, friendly):
        message = getattr(exc, "message", None) or str(exc)
        key = getattr(exc, "key", None)
        return (f"{message} [{key}]" if key and key not in message else message), None
    tail = "".join(traceback.format_exception(exc)[-12:]).rstrip()
    return f"{type(exc).__name__}: {exc}".splitlines()[0], tail
