"""What a finished run leaves behind: the LoRA, its model card, tracker settings, the hub upload.

outputs/<run>/lora/pytorch_lora_weights.safetensors (diffusers format; plus the ComfyUI copy
with lora_format = "comfyui") and a README.md model card beside it listing the settings used.
The hub upload uses the machine's own hub login; tokens never appear in logs or events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxtui.core.schema import FLAVOURS

LORA_DIR = "lora"
CARD_FILE = "README.md"


def save_final(transformer: Any, run_dir: Path, project: Any, *, step: int, run_id: str, flavour: str) -> list[Path]:
    from . import lora

    out = Path(run_dir) / LORA_DIR
    paths = lora.save_lora(transformer, out, comfyui=project.lora.lora_format == "comfyui")
    card = out / CARD_FILE
    card.write_text(model_card(project, step=step, run_id=run_id, run_dir=Path(run_dir), files=paths), encoding="utf-8")
    return [*paths, card]


def base_model_id(project: Any) -> str | None:
    m = project.model
    if m.model_flavour == "tiny-random" and not m.pretrained_model_name_or_path:
        return None
    return m.pretrained_model_name_or_path or FLAVOURS.get(m.model_flavour) or None


# settings a reader of the card wants first; the rest of the config follows in full
_CARD_KEYS = (
    "model.model_flavour",
    "model.base_model_precision",
    "lora.lora_type",
    "lora.lora_rank",
    "lora.lora_alpha",
    "lora.flux_lora_target",
    "training.train_batch_size",
    "training.gradient_accumulation_steps",
    "training.learning_rate",
    "training.lr_scheduler",
    "training.optimizer",
    "training.seed",
    "training.max_grad_norm",
    "training.grad_clip_method",
    "training.flux_guidance_mode",
    "training.flux_guidance_value",
    "training.flow_schedule_shift",
    "training.flow_schedule_auto_shift",
)


def model_card(project: Any, *, step: int, run_id: str, run_dir: Path, files: list[Path]) -> str:
    base = base_model_id(project)
    name = project.project.name
    task = "image-to-image" if project.model.model_flavour == "kontext" else "text-to-image"
    front = ["---", "library_name: diffusers", "tags:", "- flux", "- lora", f"- {task}", "- fluxtui"]
    if base:
        front.append(f"base_model: {base}")
    front += ["---", ""]
    lines = [f"# {name}", ""]
    if project.model.model_flavour == "tiny-random":
        lines += [
            "> Trained on **tiny-random**: a toy-size Flux with random weights. This LoRA learns shapes "
            "and colours only; it is for trying fluxtui out, not for use.",
            "",
        ]
    lines += [
        f"A Flux.1 LoRA trained with fluxtui for {step} steps (run `{run_id}`)"
        + (f" on [{base}](https://huggingface.co/{base})." if base else "."),
        "",
        *_assistant_lines(project),
        "## Settings",
        "",
        "| option | value |",
        "|---|---|",
    ]
    for key in _CARD_KEYS:
        lines.append(f"| `{key}` | `{_fmt(project.get(key))}` |")
    for ds in project.active_datasets:
        lines.append(
            f"| dataset `{ds.id}` | resolution {_fmt(ds.resolution)} ({ds.resolution_type}), "
            f"crop {str(ds.crop).lower()} / {ds.crop_aspect}, repeats {ds.repeats}"
            + (", regularisation" if ds.is_regularisation_data else "")
            + (f", references ({ds.conditioning_type})" if ds.dataset_type == "conditioning" else "")
            + " |"
        )
    prompts = [project.validation.validation_prompt, *(project.validation.prompts or {}).values()]
    prompts = [p for p in prompts if p]
    if prompts:
        lines += ["", "## Validation prompts", ""] + [f"- {p}" for p in prompts]
    latest = _latest_validation(run_dir)
    if latest:
        lines += ["", f"Latest validation images (in the run folder): {', '.join(latest)}"]
    lines += ["", "## Use", "", *_use_code(project, base)]
    lines += [
        "Files: " + ", ".join(p.name for p in files),
        "",
        "<details><summary>The full config (project.toml as used)</summary>",
        "",
        "```json",
        json.dumps(project.to_dict(), indent=2, default=str),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(front + lines)


def _use_code(project: Any, base: str | None) -> list[str]:
    """Loading code that works for what was trained: diffusers' load_lora_weights for a peft
    LoRA; lycoris' create_lycoris_from_weights for a LyCORIS network (diffusers cannot read it)."""
    from .lora import LORA_FILE

    repo = project.hub.hub_model_id
    kontext = project.model.model_flavour == "kontext"
    cls = "FluxKontextPipeline" if kontext else "FluxPipeline"
    imports = [f"from diffusers import {cls}", *(["from diffusers.utils import load_image"] if kontext else [])]
    pipe = f'pipe = {cls}.from_pretrained("{base or "<base model>"}", torch_dtype=torch.bfloat16)'
    # Kontext edits a reference image: the call needs it, or it generates text-to-image
    call = (
        [
            "# Kontext edits a reference image: pass it with the prompt",
            'image = pipe(prompt="...", image=load_image("reference.png")).images[0]',
        ]
        if kontext
        else []
    )
    if project.lora.lora_type != "lycoris":
        return [
            "```python",
            "import torch",
            *imports,
            "",
            pipe,
            f'pipe.load_lora_weights("{repo or "path/to/lora"}")',
            *call,
            "```",
            "",
        ]
    where = f'hf_hub_download("{repo}", "{LORA_FILE}")' if repo else f'"path/to/lora/{LORA_FILE}"'
    return [
        "A LyCORIS network (`pip install lycoris-lora`): `load_lora_weights` cannot read it, LyCORIS loads it:",
        "",
        "```python",
        "import torch",
        *imports,
        *(["from huggingface_hub import hf_hub_download"] if repo else []),
        "from lycoris import create_lycoris_from_weights",
        "",
        pipe,
        f"lora_file = {where}",
        "network, _ = create_lycoris_from_weights(1.0, lora_file, pipe.transformer)",
        "network.merge_to()  # into the transformer's weights; network.apply_to() keeps it separate",
        *call,
        "```",
        "",
    ]


def _assistant_lines(project: Any) -> list[str]:
    from fluxtui.core import assistant_lora

    a = assistant_lora.resolve(project)
    if a is None or (a.kind == "hub" and project.model.random_weights):
        return []
    return [
        f"Trained with the assistant LoRA `{a.value}` stacked frozen under it (SimpleTuner's "
        "`assistant_lora_path`). The assistant is not part of this LoRA: inference is without the "
        "assistant, load this LoRA alone.",
        "",
    ]


def _fmt(value: Any) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _latest_validation(run_dir: Path) -> list[str]:
    folder = run_dir / "validation"
    if not folder.is_dir():
        return []
    steps = sorted((p for p in folder.iterdir() if p.name.startswith("step-")), key=lambda p: int(p.name[5:]))
    if not steps:
        return []
    return [str(p.relative_to(run_dir)) for p in sorted(steps[-1].glob("*.png"))]


# -- trackers ---------------------------------------------------------------------------------


def tracker_config(project: Any) -> dict[str, Any]:
    """The config as flat scalars (tensorboard's hparams take nothing else)."""
    flat: dict[str, Any] = {}
    for section, values in project.to_dict().items():
        if section == "datasets":
            for i, ds in enumerate(values):
                for k, v in ds.items():
                    flat[f"datasets.{i}.{k}"] = _scalar(v)
        else:
            for k, v in values.items():
                flat[f"{section}.{k}"] = _scalar(v)
    return flat


def _scalar(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, default=str)


# -- the hub ----------------------------------------------------------------------------------


def push_to_hub(lora_dir: Path, project: Any, tel: Any) -> str | None:
    """Upload the LoRA folder (weights + model card). A failure is a warning: the LoRA is on
    disk either way, and the message says how to upload it by hand. Returns the repo URL."""
    repo_id = project.hub.hub_model_id
    key = "hub.hub_model_id"
    if not repo_id:
        tel.warning("push_to_hub is on but hub_model_id is empty: nothing uploaded; set it to you/name", key)
        return None
    tel.log(f"uploading {lora_dir} to the hub as {repo_id}")
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, private=bool(project.hub.hub_private), exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(lora_dir), commit_message="fluxtui: LoRA upload")
    except Exception as exc:  # network, auth, quota: all end as one clear line
        tel.warning(
            f"push_to_hub failed ({_hub_reason(exc)}); the LoRA is saved in {lora_dir}. "
            f"Upload it later with `hf upload {repo_id} {lora_dir}` after `hf auth login`.",
            "hub.push_to_hub",
        )
        return None
    url = str(getattr(info, "repo_url", "") or f"https://huggingface.co/{repo_id}")
    tel.log(f"uploaded to {url}")
    return url


def push_checkpoint(checkpoint_dir: Path, project: Any, tel: Any, *, step: int) -> str | None:
    """push_checkpoints_to_hub: upload a checkpoint's LoRA to checkpoints/checkpoint-<step>/
    of hub_model_id (the optimizer state stays local). A failure is a warning."""
    from .checkpoint import LORA_FILE

    repo_id = project.hub.hub_model_id
    if not repo_id:
        tel.warning("push_checkpoints_to_hub is on but hub_model_id is empty: nothing uploaded", "hub.hub_model_id")
        return None
    target = f"checkpoints/checkpoint-{step}/{LORA_FILE}"
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, private=bool(project.hub.hub_private), exist_ok=True, repo_type="model")
        api.upload_file(
            path_or_fileobj=str(Path(checkpoint_dir) / LORA_FILE),
            path_in_repo=target,
            repo_id=repo_id,
            commit_message=f"fluxtui: checkpoint {step}",
        )
    except Exception as exc:
        tel.warning(
            f"push_checkpoints_to_hub failed at step {step} ({_hub_reason(exc)}); the checkpoint is kept in "
            f"{checkpoint_dir}",
            "hub.push_checkpoints_to_hub",
        )
        return None
    tel.log(f"checkpoint {step} uploaded to {repo_id}/{target}")
    return target


def _hub_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = (str(exc).strip().splitlines() or [""])[0]
    lowered = f"{name} {text}".lower()
    if "offline" in lowered:
        return "HF_HUB_OFFLINE is set"
    if any(w in lowered for w in ("connect", "resolve", "network", "timeout", "timed out", "unreachable")):
        return "the hub could not be reached"
    if any(w in lowered for w in ("401", "403", "unauthorized", "token", "login")):
        return "not logged in to the hub, or the token may not write to this repo"
    return f"{name}: {text[:200]}"
