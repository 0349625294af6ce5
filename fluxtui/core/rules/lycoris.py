"""lycoris_config: the LyCORIS JSON file is read and checked here (core/lycoris_config.py), so a
typo in it fails `validate` with its line or key instead of the run after the models load."""

from __future__ import annotations

from .. import lycoris_config
from ..config import Project
from ..problems import Problem
from ..schema import BY_DOTTED
from .base import problem_at, rule

KEY = lycoris_config.KEY


@rule
def _lycoris_config(p: Project) -> list[Problem]:
    lora = p.lora
    if not lora.lycoris_config:
        return []
    if lora.lora_type != "lycoris":
        return [
            problem_at(
                p,
                'lycoris_config is read only with lora_type = "lycoris"; this run trains a standard LoRA',
                KEY,
                also=("lora.lora_type",),
                severity="warning",
                fix='set lora_type = "lycoris", or remove lycoris_config',
            )
        ]
    name = lora.lycoris_config
    try:
        cfg = lycoris_config.read(p.resolve(name))
    except lycoris_config.LycorisConfigError as exc:
        return [problem_at(p, f"lycoris_config {name}: {exc.message}", KEY, fix=exc.fix)]
    out = [problem_at(p, f"lycoris_config {name}: {msg}", KEY, fix=fix) for msg, fix in lycoris_config.problems(cfg)]
    if out:
        return out
    if lora.lora_format == "comfyui":
        algo = str(cfg.get("algo", "lora")).lower()
        algos = {algo, *(str(c.get("algo", algo)).lower() for c in _module_configs(cfg))}
        unreadable = sorted(algos - set(lycoris_config.COMFYUI_ALGOS))
        if unreadable:
            out.append(
                problem_at(
                    p,
                    f"lycoris_config {name} trains {', '.join(unreadable)}, which ComfyUI's Flux loader does not read",
                    "lora.lora_format",
                    also=(KEY,),
                    fix='set lora_format = "diffusers", or use algo lokr, loha or lora',
                )
            )
        if lycoris_config.prefix(cfg) != "lycoris":
            out.append(
                problem_at(
                    p,
                    f"lycoris_config {name} sets lora_prefix {lycoris_config.prefix(cfg)!r}; ComfyUI reads Flux "
                    'LyCORIS layers only under the "lycoris" prefix',
                    "lora.lora_format",
                    also=(KEY,),
                    fix='remove lora_prefix from apply_preset, or set lora_format = "diffusers"',
                )
            )
    if lora.lokr_factor != BY_DOTTED["lora.lokr_factor"].default:
        out.append(
            problem_at(
                p,
                f"lokr_factor = {lora.lokr_factor} is not used: lycoris_config {name} describes the whole network "
                '(its "factor" key)',
                "lora.lokr_factor",
                also=(KEY,),
                severity="warning",
                fix=f'set "factor": {lora.lokr_factor} in {name}, and remove lokr_factor',
            )
        )
    if "apply_preset" not in cfg:
        out.append(
            problem_at(
                p,
                f"lycoris_config {name} has no apply_preset: fluxtui puts the adapter on flux_lora_target = "
                f'"{lora.flux_lora_target}"\'s layers (SimpleTuner would wrap every Linear layer)',
                KEY,
                severity="warning",
                fix='add "apply_preset": {"target_module": ["FluxAttention", "FeedForward"]} to choose the layers',
            )
        )
    return out


def _module_configs(cfg: dict) -> list[dict]:
    preset = cfg.get("apply_preset") or {}
    tables = [preset.get("module_algo_map") or {}, preset.get("name_algo_map") or {}]
    return [c for t in tables for c in t.values() if isinstance(c, dict)]
