"""The assistant LoRA (SimpleTuner's assistant_lora_path): which file, if any, a run stacks
frozen under the trained LoRA. Pure and offline: validate and the trainer both ask here.

SimpleTuner loads it for the flavours that have one (schnell: ostris' training adapter, which
undoes the step distillation so that a LoRA can be trained on it) unless
disable_assistant_lora is set, as a second peft adapter named "assistant": active and frozen
while training (assistant_lora_strength), off in the validation images unless
assistant_lora_inference_strength says otherwise, and never part of the saved LoRA.
fluxtui does the same; an empty `assistant_lora_path = ""` also turns it off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

KEY = "lora.assistant_lora_path"
WEIGHT_KEY = "lora.assistant_lora_weight_name"
ADAPTER_NAME = "assistant"
DEFAULT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# The flavours SimpleTuner gives an assistant by default, and which one.
FLAVOUR_DEFAULTS = {"schnell": "ostris/FLUX.1-schnell-training-adapter"}


@dataclass(frozen=True)
class Assistant:
    value: str  # as written, or the flavour's default
    kind: Literal["file", "folder", "hub", "missing"]
    path: Path | None  # the local file or folder (kind file/folder/missing)
    weight_name: str | None
    from_default: bool  # not written: the flavour's default
    strength: float
    inference_strength: float

    @property
    def repo(self) -> str:
        return self.value


def looks_like_path(value: str) -> bool:
    """Hub ids are "owner/name"; anything else with path syntax, or a .safetensors name, is a path."""
    return (
        value.startswith(("/", ".", "~"))
        or "\\" in value
        or value.count("/") > 1
        or value.endswith(".safetensors")
        or (len(value) > 1 and value[1] == ":")
    )


def resolve(project: Any) -> Assistant | None:
    """The assistant this run loads, or None (other flavours, disabled, or written empty)."""
    lc = project.lora
    if getattr(lc, "disable_assistant_lora", False):
        return None
    value = getattr(lc, "assistant_lora_path", None)
    from_default = False
    if not value:
        if KEY in getattr(project, "explicit", set()):
            return None  # `assistant_lora_path = ""`: off
        value = FLAVOUR_DEFAULTS.get(project.model.model_flavour)
        from_default = True
        if not value:
            return None
    path = project.resolve(value)
    if path.is_file():
        kind, where = "file", path
    elif path.is_dir():
        kind, where = "folder", path
    elif looks_like_path(value):
        kind, where = "missing", path
    else:
        kind, where = "hub", None
    return Assistant(
        value=value,
        kind=kind,  # type: ignore[arg-type]
        path=where,
        weight_name=getattr(lc, "assistant_lora_weight_name", None) or None,
        from_default=from_default,
        strength=float(getattr(lc, "assistant_lora_strength", 1.0)),
        inference_strength=float(getattr(lc, "assistant_lora_inference_strength", 0.0)),
    )


def pick_file(folder: Path, weight_name: str | None) -> Path | None:
    """The LoRA file in a folder (or hub snapshot): weight_name, else the usual name, else the
    only .safetensors file; None when there is no single answer."""
    if weight_name:
        found = folder / weight_name
        return found if found.is_file() else None
    usual = folder / DEFAULT_WEIGHT_NAME
    if usual.is_file():
        return usual
    files = sorted(folder.glob("*.safetensors"))
    return files[0] if len(files) == 1 else None


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repos (HF_HUB_CACHE, else HF_HOME/hub)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
    return Path(home).expanduser() / "hub"


def cached_file(repo: str, weight_name: str | None) -> Path | None:
    """The assistant's file in the local hub cache: in the snapshot the repo's main branch points
    at (what huggingface_hub serves offline), if that snapshot holds it."""
    root = hub_cache_dir() / ("models--" + repo.replace("/", "--"))
    try:
        commit = (root / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = root / "snapshots" / commit
    return pick_file(folder, weight_name) if commit and folder.is_dir() else None
