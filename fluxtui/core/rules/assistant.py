"""The assistant LoRA (core/assistant_lora.py): a file, folder or hub repo the trainer can load.

Only files, the hub cache and the environment are looked at: a missing file, a folder without
one LoRA in it, or a hub repo that HF_HUB_OFFLINE keeps from downloading fails `validate`
instead of the run, after the models have loaded.
"""

from __future__ import annotations

import re

from .. import assistant_lora
from ..config import Project
from ..problems import Problem
from ..safetensors_header import HeaderError, lora_layout, read_header
from .base import problem_at, rule
from .services import hub_offline

KEY, WEIGHT_KEY = assistant_lora.KEY, assistant_lora.WEIGHT_KEY
_OFF = 'set disable_assistant_lora = true (or assistant_lora_path = "") to train without it'
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


@rule
def _assistant(p: Project) -> list[Problem]:
    a = assistant_lora.resolve(p)
    if a is None:
        if p.lora.assistant_lora_weight_name:
            return [
                problem_at(
                    p,
                    "assistant_lora_weight_name is set but this run loads no assistant LoRA",
                    WEIGHT_KEY,
                    severity="warning",
                    fix="remove it, or set assistant_lora_path",
                )
            ]
        return []
    where = f"assistant_lora_path = {a.value!r}" + (f" (the {p.model.model_flavour} default)" if a.from_default else "")
    also = ("model.model_flavour",) if a.from_default else ()
    if a.kind == "missing":
        return [
            problem_at(
                p,
                f"{where}: {a.path} does not exist",
                KEY,
                fix="point it at a .safetensors LoRA file or a folder holding one (relative to the workspace), "
                "or give a hub id (owner/name)",
            )
        ]
    if a.kind == "folder":
        found = assistant_lora.pick_file(a.path, a.weight_name)
        if found is None:
            what = (
                f"has no file {a.weight_name}"
                if a.weight_name
                else f"holds no {assistant_lora.DEFAULT_WEIGHT_NAME} and not exactly one .safetensors file"
            )
            return [
                problem_at(
                    p,
                    f"{where}: the folder {what}",
                    WEIGHT_KEY if a.weight_name else KEY,
                    also=(KEY,),
                    fix="set assistant_lora_weight_name to the LoRA file's name in that folder",
                )
            ]
        return _file_problems(p, where, found)
    if a.kind == "file":
        return _file_problems(p, where, a.path)
    # a hub repo
    if not _HUB_ID.fullmatch(a.value):
        return [
            problem_at(
                p,
                f"{where} is neither an existing file or folder nor a hub id (owner/name)",
                KEY,
                fix="fix the path (relative to the workspace) or the hub id",
            )
        ]
    if p.model.random_weights:
        return []  # random weights download nothing: the trainer leaves a hub assistant out
    cached = assistant_lora.cached_file(a.value, a.weight_name)
    if cached is None and hub_offline():
        return [
            problem_at(
                p,
                f"{where}: HF_HUB_OFFLINE is set, so the hub is not asked, and the assistant LoRA is not in "
                f"the local hub cache ({assistant_lora.hub_cache_dir()})",
                KEY,
                also=also,
                fix="unset HF_HUB_OFFLINE to download it once, or point assistant_lora_path at a local "
                f".safetensors file, or {_OFF}",
            )
        ]
    if cached is not None:
        return _file_problems(p, where, cached)
    return []


def _file_problems(p: Project, where: str, path) -> list[Problem]:
    try:
        layout, _rank = lora_layout(read_header(path))
    except HeaderError as exc:
        return [problem_at(p, f"{where}: {path.name} is {exc}", KEY, fix="use a .safetensors LoRA file")]
    if layout not in ("diffusers", "kohya"):
        what = "a LyCORIS LoKr" if layout == "lokr" else "no LoRA weights (lora_A/lora_B or lora_down/lora_up)"
        return [
            problem_at(
                p,
                f"{where}: {path.name} holds {what}; the assistant is loaded as a peft LoRA",
                KEY,
                fix="use a diffusers, peft or kohya LoRA file for the assistant, or " + _OFF,
            )
        ]
    return []
