"""The rule registry and the helpers every rule module (and core/datasets.py) uses."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import KeyLocator, Project
from ..problems import Problem, Severity

if TYPE_CHECKING:
    from ..datasets import DatasetReport

# Full-size Flux: 19 double + 38 single blocks; TREAD indices address this combined list.
FLUX_BLOCKS = 57
STANDARD_LR = (1e-5, 1e-3)

# importable module -> what to `pip install`
PIP_NAMES = {
    "optimi": "torch-optimi",
    "bitsandbytes": "bitsandbytes",
    "prodigyopt": "prodigyopt",
    "optimum.quanto": "optimum-quanto",
    "lycoris": "lycoris-lora",
    "sageattention": "sageattention",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
}


# -- shared helpers (datasets.py uses them too) -----------------------------------------------


@functools.lru_cache(maxsize=16)
def _locator(text: str) -> KeyLocator:
    return KeyLocator(text)


def line_of(project: Project, *keys: str) -> int | None:
    """Line of the first of `keys` written in the file (a key, then its table as fallback)."""
    locator = _locator(project.text)
    for key in keys:
        line = locator.line_of(key)
        if line is not None:
            return line
    return None


def problem_at(
    project: Project,
    message: str,
    key: str,
    *,
    fix: str | None = None,
    severity: Severity = "error",
    also: tuple[str, ...] = (),
    path: str | None = None,
) -> Problem:
    """A Problem on `key`, with the line of the key, else of the keys in `also`, else of the
    key's table (where the user would add it)."""
    table = _table_of(key)
    line = line_of(project, key, *also, *([table] if table else []))
    return Problem(message, key=key, severity=severity, file=project.path.name, line=line, fix=fix, path=path)


def _table_of(key: str) -> str | None:
    m = re.match(r"(datasets\[\d+\])\.", key)
    if m:
        return m[1]
    return key.rsplit(".", 1)[0] if "." in key else None


def package_installed(module: str) -> bool:
    """Whether `module` is importable, found without importing it (nor its parent package)."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if not rest:
        return True
    child = rest.split(".")[0]
    for location in spec.submodule_search_locations or ():
        if os.path.isdir(os.path.join(location, child)) or os.path.isfile(os.path.join(location, child + ".py")):
            return True
    return False


def visible_gpu_count() -> int:
    """CUDA devices this process may use, found without importing torch or NVML:
    CUDA_VISIBLE_DEVICES when set, else the driver's /proc entries; 0 without a GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        count = 0
        for item in env.split(","):
            item = item.strip()
            if not item or item.startswith("-"):  # CUDA stops at the first invalid id
                break
            count += 1
        return count
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def process_count(project: Project) -> int:
    """Training processes in total (accelerate's num_processes): "auto" means one per GPU
    this machine may use (gpu_ids, else the visible ones; 1 without GPUs), on every machine."""
    hw = project.hardware
    if hw.num_processes != "auto":
        return int(hw.num_processes)
    per_machine = len(hw.gpu_ids) if hw.gpu_ids else visible_gpu_count()
    return max(1, per_machine) * max(1, hw.num_machines)


# -- the rules ---------------------------------------------------------------------------------

Rule = Callable[[Project], list[Problem]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def check(project: Project) -> list[Problem]:
    """Every cross-field problem of the config (datasets' files are not opened)."""
    problems: list[Problem] = []
    for fn in RULES:
        problems.extend(fn(project))
    return problems


def check_all(project: Project) -> tuple[list[DatasetReport], list[Problem]]:
    """The config rules, then a scan of every active dataset: all a run needs to know."""
    from ..datasets import scan_project

    problems = check(project)
    reports, scan_problems = scan_project(project)
    return reports, problems + scan_problems


def _missing_package(project: Project, module: str, key: str, what: str, alternative: str) -> list[Problem]:
    if package_installed(module):
        return []
    pip = PIP_NAMES.get(module, module)
    return [
        problem_at(
            project,
            f"{what} needs the `{pip}` package, which is not installed",
            key,
            fix=f"pip install {pip}" + (f", or {alternative}" if alternative else ""),
        )
    ]
