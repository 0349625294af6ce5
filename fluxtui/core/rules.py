"""Cross-field checks on a loaded project: option conflicts, missing packages, risky values.

`check(project)` looks at the config alone (plus which packages and files exist); it never
opens an image. `check_all(project)` adds the dataset scan (core/datasets.py) and is what
`fluxtui validate`, the runner and the watcher call. Every problem names the key at fault,
its line in project.toml where the key is written (else the line of its table), and a fix.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import KeyLocator, Project
from .problems import Problem, Severity
from .schema import BY_DOTTED, OPTIMIZERS

if TYPE_CHECKING:
    from .datasets import DatasetReport

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
    from .datasets import scan_project

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
def _quantisation(p: Project) -> list[Problem]:
    out = []
    base = p.model.base_model_precision
    if p.lora.lora_init_type == "loftq" and base.endswith("-quanto"):
        out.append(
            problem_at(
                p,
                f'lora_init_type = "loftq" cannot be used with a quanto base ({base})',
                "lora.lora_init_type",
                also=("model.base_model_precision",),
                fix='set lora_init_type = "default", or base_model_precision = "no_change"',
            )
        )
    if base == "nf4-bnb" and p.training.torch_compile:
        out.append(
            problem_at(
                p,
                'nf4-bnb weights cannot be compiled (torch_compile = true with base_model_precision = "nf4-bnb")',
                "training.torch_compile",
                also=("model.base_model_precision",),
                fix='set torch_compile = false, or base_model_precision = "int8-quanto" (int8 + compile is fastest)',
            )
        )
    if base == "nf4-bnb" and p.lora.lora_type == "lycoris":
        out.append(
            problem_at(
                p,
                'LoKr (lora_type = "lycoris") cannot wrap bitsandbytes\' packed 4-bit layers (nf4-bnb base)',
                "lora.lora_type",
                also=("model.base_model_precision",),
                fix='use base_model_precision = "int4-quanto" or "int8-quanto", or lora_type = "standard"',
            )
        )
    precisions = {
        "model.base_model_precision": base,
        "model.text_encoder_1_precision": p.model.text_encoder_1_precision,
        "model.text_encoder_2_precision": p.model.text_encoder_2_precision,
    }
    for key, value in precisions.items():
        module = "optimum.quanto" if value.endswith("-quanto") else "bitsandbytes" if value == "nf4-bnb" else None
        if module:
            out += _missing_package(p, module, key, f'{key.split(".")[1]} = "{value}"', 'use "no_change"')
    return out


@rule
def _schedule(p: Project) -> list[Problem]:
    t = p.training
    out = []
    if t.flow_schedule_auto_shift and "training.flow_schedule_shift" in p.explicit:
        out.append(
            problem_at(
                p,
                "flow_schedule_auto_shift and a fixed flow_schedule_shift exclude each other",
                "training.flow_schedule_shift",
                also=("training.flow_schedule_auto_shift",),
                fix="remove flow_schedule_shift, or set flow_schedule_auto_shift = false",
            )
        )
    if t.max_train_steps == 0 and t.num_train_epochs == 0:
        out.append(
            problem_at(
                p,
                "max_train_steps and num_train_epochs are both 0: training would never run",
                "training.max_train_steps",
                also=("training.num_train_epochs",),
                fix="set max_train_steps (e.g. 1000) or num_train_epochs",
            )
        )
    if 0 < t.max_train_steps <= t.lr_warmup_steps and t.lr_scheduler in ("constant_with_warmup", "cosine", "linear"):
        out.append(
            problem_at(
                p,
                f"lr_warmup_steps ({t.lr_warmup_steps}) >= max_train_steps ({t.max_train_steps}): "
                "the learning rate never reaches its peak",
                "training.lr_warmup_steps",
                severity="warning",
                fix=f"use lr_warmup_steps <= {max(0, t.max_train_steps // 10)} (about a tenth of the run)",
            )
        )
    if not t.gradient_checkpointing:
        out.append(
            problem_at(
                p,
                "gradient_checkpointing is off: activations of every block stay in VRAM",
                "training.gradient_checkpointing",
                severity="warning",
                fix="set gradient_checkpointing = true unless the VRAM is there (it costs ~20% speed)",
            )
        )
    if t.mixed_precision == "fp16":
        out.append(
            problem_at(
                p,
                "Flux's activations overflow in fp16 (NaN losses)",
                "training.mixed_precision",
                severity="warning",
                fix='set mixed_precision = "bf16"',
            )
        )
    return out


@rule
def _learning_rate(p: Project) -> list[Problem]:
    lr, opt = p.training.learning_rate, p.training.optimizer
    if opt == "prodigy":
        if lr < 0.1:
            return [
                problem_at(
                    p,
                    f"prodigy finds the step size itself and expects learning_rate ~1.0, got {lr:g}",
                    "training.learning_rate",
                    severity="warning",
                    fix="set learning_rate = 1.0",
                )
            ]
        return []
    lo, hi = STANDARD_LR
    if p.lora.lora_type == "standard" and not lo <= lr <= hi:
        return [
            problem_at(
                p,
                f"learning_rate {lr:g} is outside the usual range for a standard LoRA ({lo:g} .. {hi:g})",
                "training.learning_rate",
                severity="warning",
                fix="start with learning_rate = 1e-4" if lr > hi else "raise it to at least 1e-5",
            )
        ]
    return []


@rule
def _packages(p: Project) -> list[Problem]:
    out = []
    module = OPTIMIZERS.get(p.training.optimizer)
    if module:
        out += _missing_package(
            p, module, "training.optimizer", f'optimizer "{p.training.optimizer}"', 'or optimizer = "torch-adamw"'
        )
    if p.training.attention_mechanism == "sageattention":
        out += _missing_package(
            p, "sageattention", "training.attention_mechanism", "sageattention", 'attention_mechanism = "sdpa"'
        )
    if p.logging.report_to != "none":
        out += _missing_package(
            p, p.logging.report_to, "logging.report_to", f'report_to = "{p.logging.report_to}"', 'report_to = "none"'
        )
    if p.lora.lora_type == "lycoris":
        out += _missing_package(p, "lycoris", "lora.lora_type", 'lora_type = "lycoris"', 'lora_type = "standard"')
    return out


@rule
def _lora(p: Project) -> list[Problem]:
    lora = p.lora
    out = []
    if lora.flux_lora_target == "all+ffs" and lora.lora_format == "diffusers":
        out.append(
            problem_at(
                p,
                "ComfyUI often fails to load all+ffs LoRAs saved in diffusers' format",
                "lora.lora_format",
                also=("lora.flux_lora_target",),
                severity="warning",
                fix='set lora_format = "comfyui" to also export a ComfyUI-ready file',
            )
        )
    # The template writes every option, so compare with the default rather than p.explicit.
    if lora.lora_type == "standard" and lora.lokr_factor != BY_DOTTED["lora.lokr_factor"].default:
        out.append(
            problem_at(
                p,
                'lokr_factor only applies to lora_type = "lycoris"',
                "lora.lokr_factor",
                severity="warning",
                fix='remove lokr_factor, or set lora_type = "lycoris"',
            )
        )
    if lora.init_lora and not p.resolve(lora.init_lora).exists():
        out.append(
            problem_at(
                p,
                f"init_lora file {lora.init_lora} does not exist",
                "lora.init_lora",
                fix="point init_lora at a .safetensors LoRA file (relative to the workspace), or remove it",
            )
        )
    return out


@rule
def _flavour(p: Project) -> list[Problem]:
    flavour = p.model.model_flavour
    guidance_real = p.validation.validation_guidance_real
    out = []
    if flavour == "fluxbooru" and guidance_real <= 1:
        out.append(
            problem_at(
                p,
                "fluxbooru is de-distilled: validation images need real CFG (validation_guidance_real > 1)",
                "validation.validation_guidance_real",
                severity="warning",
                fix="set validation_guidance_real = 3.5",
            )
        )
    elif p.training.flux_guidance_value > 1 and guidance_real <= 1:
        out.append(
            problem_at(
                p,
                f"flux_guidance_value = {p.training.flux_guidance_value:g} re-introduces CFG, but validation "
                "runs without it (validation_guidance_real <= 1): samples will look washed out",
                "validation.validation_guidance_real",
                also=("training.flux_guidance_value",),
                severity="warning",
                fix="set validation_guidance_real = 3.5, or flux_guidance_value = 1.0",
            )
        )
    if flavour == "libreflux" and not p.training.flux_attention_masked_training:
        out.append(
            problem_at(
                p,
                "libreflux was trained with T5 attention masking; without it the LoRA drifts",
                "training.flux_attention_masked_training",
                severity="warning",
                fix="set flux_attention_masked_training = true",
            )
        )
    max_len = p.model.tokenizer_max_length
    if flavour == "schnell" and max_len is not None and max_len > 256:
        out.append(
            problem_at(
                p,
                f"schnell's T5 sequence length is 256, got tokenizer_max_length = {max_len}",
                "model.tokenizer_max_length",
                fix="set tokenizer_max_length = 256, or remove it",
            )
        )
    return out


@rule
def _tread(p: Project) -> list[Problem]:
    cfg = p.training.tread_config
    if not cfg or p.model.model_flavour == "tiny-random":  # the toy model has its own block count
        return []
    for i, route in enumerate(cfg["routes"]):
        start, end = route["start_layer_idx"], route["end_layer_idx"]
        bad = [v for v in (start, end) if not -FLUX_BLOCKS <= v < FLUX_BLOCKS]
        if bad:
            message = f"route {i}: layer index {bad[0]} is outside Flux's {FLUX_BLOCKS} blocks"
        elif start % FLUX_BLOCKS > end % FLUX_BLOCKS:
            message = f"route {i}: start_layer_idx {start} comes after end_layer_idx {end}"
        else:
            continue
        return [
            problem_at(
                p,
                message,
                "training.tread_config",
                fix=f"use indices from 0 to {FLUX_BLOCKS - 1} (or -1 to -{FLUX_BLOCKS} from the end), start before end",
            )
        ]
    return []


@rule
def _validation(p: Project) -> list[Problem]:
    v = p.validation
    out = []
    bad = []
    for item in v.validation_resolution:
        w, h = (int(x) for x in item.split("x"))
        if w == 0 or h == 0 or w % 16 or h % 16:
            bad.append(item)
    if bad:
        fixed = ", ".join(f'"{_round16(item)}"' for item in bad)
        out.append(
            problem_at(
                p,
                f"validation_resolution {', '.join(bad)}: Flux needs sides that are multiples of 16",
                "validation.validation_resolution",
                fix=f"use {fixed}",
            )
        )
    steps = p.training.max_train_steps
    if v.validation_steps > 0 and 0 < steps < v.validation_steps:
        out.append(
            problem_at(
                p,
                f"validation_steps ({v.validation_steps}) > max_train_steps ({steps}): no validation images until the end",
                "validation.validation_steps",
                severity="warning",
                fix=f"set validation_steps = {max(1, steps // 4)} to watch progress",
            )
        )
    if v.validation_steps > 0 and not (v.validation_prompt or "").strip() and not v.prompts:
        out.append(
            problem_at(
                p,
                "validation is on but there is no validation_prompt and no [validation.prompts]",
                "validation.validation_prompt",
                severity="warning",
                fix='set validation_prompt = "..." or validation_steps = 0',
            )
        )
    return out


def _round16(item: str) -> str:
    w, h = (max(16, math.floor(int(x) / 16 + 0.5) * 16) for x in item.split("x"))
    return f"{w}x{h}"


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
def _hub(p: Project) -> list[Problem]:
    if p.hub.push_to_hub and not p.hub.hub_model_id:
        return [
            problem_at(
                p,
                "push_to_hub is on but hub_model_id is not set",
                "hub.hub_model_id",
                also=("hub.push_to_hub",),
                fix='set hub_model_id = "you/my-flux-lora", or push_to_hub = false',
            )
        ]
    return []


@rule
def _resume(p: Project) -> list[Problem]:
    value = p.training.resume_from_checkpoint
    if not value or value in ("latest", "none"):
        return []
    if not p.resolve(value).is_dir():
        return [
            problem_at(
                p,
                f"resume_from_checkpoint folder {value} does not exist",
                "training.resume_from_checkpoint",
                fix='use "latest", "none", or a checkpoint folder such as outputs/<run>/checkpoints/checkpoint-500',
            )
        ]
    return []


@rule
def _datasets(p: Project) -> list[Problem]:
    out = []
    active = [(i, d) for i, d in enumerate(p.datasets) if not d.disabled]
    if not p.datasets:
        out.append(
            problem_at(
                p,
                "there is no [[datasets]] table: nothing to train on",
                "datasets",
                fix='add [[datasets]] with id = "my-images" and instance_data_dir = "datasets/my-images"',
            )
        )
    elif not active:
        out.append(
            problem_at(
                p,
                "every dataset is disabled: nothing to train on",
                "datasets[0].disabled",
                fix="set disabled = false on at least one dataset",
            )
        )
    elif all(d.is_regularisation_data for _, d in active):
        i = active[0][0]
        out.append(
            problem_at(
                p,
                "every active dataset is regularisation data: there is nothing to learn from",
                f"datasets[{i}].is_regularisation_data",
                fix="add a dataset of your subject, or set is_regularisation_data = false",
            )
        )
    elif sum(d.probability for _, d in active) <= 0:
        i = active[0][0]
        out.append(
            problem_at(
                p,
                "every active dataset has probability 0: no batch can be drawn",
                f"datasets[{i}].probability",
                fix="set probability = 1.0",
            )
        )
    for i, d in active:
        out += _dataset_options(p, i, d)
    return out


def _dataset_options(p: Project, i: int, d) -> list[Problem]:
    key = f"datasets[{i}]"
    out = []
    if d.caption_strategy == "instanceprompt" and not d.instance_prompt:
        out.append(
            problem_at(
                p,
                'caption_strategy = "instanceprompt" needs instance_prompt',
                f"{key}.instance_prompt",
                also=(f"{key}.caption_strategy",),
                fix='add instance_prompt = "a photo of sks dog" to this dataset',
            )
        )
    elif d.instance_prompt and d.caption_strategy != "instanceprompt":
        out.append(
            problem_at(
                p,
                f'instance_prompt is ignored with caption_strategy = "{d.caption_strategy}"',
                f"{key}.instance_prompt",
                severity="warning",
                fix='set caption_strategy = "instanceprompt", or remove instance_prompt',
            )
        )
    r, kind = d.resolution, d.resolution_type
    if kind == "area" and r > 16:
        out.append(
            problem_at(
                p,
                f'resolution {r:g} with resolution_type = "area" means {r:g} megapixels',
                f"{key}.resolution_type",
                also=(f"{key}.resolution",),
                fix='use resolution_type = "pixel_area" for an edge in pixels, or resolution = 1.0 (megapixels)',
            )
        )
    elif kind != "area" and r < 64:
        hint = (
            'use resolution_type = "area" for megapixels'
            if 0 < r <= 16
            else "use at least 64 px (Flux works in 64-px steps)"
        )
        out.append(
            problem_at(
                p,
                f'resolution {r:g} px with resolution_type = "{kind}" is too small to train on',
                f"{key}.resolution",
                also=(f"{key}.resolution_type",),
                fix=hint,
            )
        )
    elif kind == "area" and r <= 0:
        out.append(problem_at(p, "resolution must be above 0", f"{key}.resolution", fix="e.g. resolution = 1.0"))
    big, down = d.maximum_image_size, d.target_downsample_size
    if big and not down:
        out.append(
            problem_at(
                p,
                "maximum_image_size has no effect without target_downsample_size",
                f"{key}.target_downsample_size",
                also=(f"{key}.maximum_image_size",),
                severity="warning",
                fix=f"add target_downsample_size (at most {big:g}, same unit as resolution)",
            )
        )
    elif down and not big:
        out.append(
            problem_at(
                p,
                "target_downsample_size has no effect without maximum_image_size",
                f"{key}.maximum_image_size",
                also=(f"{key}.target_downsample_size",),
                severity="warning",
                fix="add maximum_image_size (images above it are downsampled first)",
            )
        )
    elif big and down and down > big:
        out.append(
            problem_at(
                p,
                f"target_downsample_size ({down:g}) is above maximum_image_size ({big:g}): that would upscale",
                f"{key}.target_downsample_size",
                severity="warning",
                fix=f"use target_downsample_size <= {big:g}",
            )
        )
    return out
