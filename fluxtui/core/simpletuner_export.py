"""Write a fluxtui project as SimpleTuner files (config.json, multidatabackend.json, and the
lycoris / prompt-library files), so the same project runs there. `fluxtui import` of the
result gives back the same resolved config (tests/test_import.py checks the round trip).

Paths become absolute (SimpleTuner resolves relative ones from its own working directory),
except caches: those stay relative, so each trainer writes its own format in its own folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import lycoris_config
from .config import Project, atomic_write_text
from .schema import OPTIONS, options_in
from .simpletuner_import import MODEL_FAMILY
from .simpletuner_names import FLUXTUI_ONLY

# fluxtui option -> the name SimpleTuner's current examples use for it.
_EXPORT_NAMES = {
    "training.checkpointing_steps": "checkpoint_step_interval",
    "project.name": "tracker_run_name",
}
_TEXT_EMBEDS_ID = "text-embeds"
# Caches stay relative: each trainer keeps its own (the formats differ), in its own folder.
_CACHES = {"cache_dir_vae"}
# fluxtui-only options that travel in another file (multidatabackend, lycoris, prompt library).
_EXPORTED_ELSEWHERE = {"text_embeds.cache_dir", "lora.lokr_factor", "validation.prompts"}


class ExportProblem(Exception):
    pass


@dataclass
class Export:
    files: list[Path] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # dotted -> why
    notes: dict[str, str] = field(default_factory=dict)  # written, but SimpleTuner will object


def export(project: Project, out: Path, *, force: bool = False) -> Export:
    out = Path(out).expanduser().resolve()
    result = Export()
    config: dict[str, Any] = {"model_family": MODEL_FAMILY, "model_type": "lora"}
    config["output_dir"] = str(project.workspace.resolve() / "outputs" / "simpletuner")
    config["data_backend_config"] = str(out / "multidatabackend.json")
    for opt in OPTIONS:
        if opt.section == "datasets":
            continue
        value = project.get(opt.dotted)
        if opt.dotted in FLUXTUI_ONLY:
            if opt.dotted not in _EXPORTED_ELSEWHERE and value != opt.default and value not in (None, {}, []):
                result.left_out[opt.dotted] = _why_left_out(opt.dotted)
            continue
        if value is None or (opt.kind == "auto_int" and value == "auto"):
            continue
        if opt.kind == "path":
            value = str(project.resolve(value))
        if opt.key == "validation_resolution":
            value = ",".join(value)
        config[_EXPORT_NAMES.get(opt.dotted, opt.key)] = value
    if project.model.model_flavour == "tiny-random":
        result.notes["model.model_flavour"] = "tiny-random is fluxtui's test model; SimpleTuner has no such flavour"
    files: dict[str, str] = {}
    if project.lora.lora_type == "lycoris":
        if not project.lora.lycoris_config:  # SimpleTuner reads them from the generated file
            for key in ("lora_rank", "lora_alpha"):
                config.pop(key, None)
        config["lycoris_config"] = str(out / "lycoris_config.json")
        files["lycoris_config.json"] = _lycoris_file(project, result)
    elif project.lora.lycoris_config:
        config.pop("lycoris_config", None)
        result.left_out["lora.lycoris_config"] = 'read only with lora_type = "lycoris", as in fluxtui'
    prompts = project.validation.prompts
    if prompts and not project.validation.user_prompt_library:
        files["user_prompt_library.json"] = json.dumps(prompts, indent=4) + "\n"
        config["user_prompt_library"] = str(out / "user_prompt_library.json")
    elif prompts:
        result.left_out["validation.prompts"] = "SimpleTuner reads one prompt library: user_prompt_library is exported"
    files["multidatabackend.json"] = json.dumps(_datasets(project), indent=4) + "\n"
    files["config.json"] = json.dumps(config, indent=4) + "\n"
    taken = [out / name for name in files if (out / name).exists()]
    if taken and not force:
        raise ExportProblem(f"{taken[0]} already exists; add --force to replace the exported files")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(out / name, text)
        result.files.append(out / name)
    library = project.validation.user_prompt_library
    if library:  # SimpleTuner reads the same file where it is; a copy travels with the export
        src = project.resolve(library)
        if src.is_file():
            shutil.copyfile(src, out / "user_prompt_library.json")
            config["user_prompt_library"] = str(out / "user_prompt_library.json")
            atomic_write_text(out / "config.json", json.dumps(config, indent=4) + "\n")
            result.files.append(out / "user_prompt_library.json")
    return result


def _datasets(project: Project) -> list[dict[str, Any]]:
    entries = []
    for ds in project.datasets:
        entry: dict[str, Any] = {}
        for opt in options_in("datasets"):
            value = getattr(ds, opt.key)
            if value is None or value == []:
                continue
            if opt.kind == "path" and opt.key not in _CACHES:
                value = str(project.resolve(value))
            entry[opt.key] = value
        for key in ("dataset_type", "conditioning_data"):  # kontext pairing (when the schema has them)
            if getattr(ds, key, None) is not None:
                entry[key] = getattr(ds, key)
        entries.append(entry)
    entries.append(
        {
            "id": _TEXT_EMBEDS_ID,
            "type": "local",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": project.text_embeds.cache_dir,
        }
    )
    return entries


def _lycoris_file(project: Project, result: Export) -> str:
    """The project's lycoris_config as SimpleTuner reads it, or LoKr from lokr_factor when
    only the short form is set."""
    lc = project.lora
    if not lc.lycoris_config:
        alpha = lc.lora_alpha if lc.lora_alpha is not None else lc.lora_rank
        short = {"algo": "lokr", "multiplier": 1.0, "linear_dim": lc.lora_rank, "linear_alpha": alpha}
        return json.dumps({**short, "factor": lc.lokr_factor}, indent=4) + "\n"
    path = project.resolve(lc.lycoris_config)
    try:
        cfg = lycoris_config.read(path)
    except lycoris_config.LycorisConfigError as exc:
        raise ExportProblem(f"lora.lycoris_config: {exc.message} ({exc.fix})") from None
    if "apply_preset" not in cfg:
        result.notes["lora.lycoris_config"] = (
            f"no apply_preset: SimpleTuner wraps every Linear layer, fluxtui only flux_lora_target = "
            f'"{lc.flux_lora_target}"\'s'
        )
    preset, renamed = lycoris_config.rename_classes(cfg.get("apply_preset"), lycoris_config.DIFFUSERS_TO_SIMPLETUNER)
    if not renamed:
        return path.read_text(encoding="utf-8")  # the file as given
    result.notes["lora.lycoris_config"] = "FluxAttention is written as Attention, SimpleTuner's Flux attention class"
    return json.dumps({**cfg, "apply_preset": preset}, indent=4) + "\n"


def _why_left_out(dotted: str) -> str:
    return "SimpleTuner has no such option"
