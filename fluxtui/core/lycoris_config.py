"""lycoris_config: a LyCORIS JSON file as SimpleTuner reads it, checked without torch.

SimpleTuner's format: multiplier, linear_dim and linear_alpha (mandatory), optional
`apply_preset` (handed to LycorisNetwork.apply_preset: target_module, module_algo_map...), and
every other key is a keyword argument of lycoris' create_lycoris (algo, factor, full_matrix,
bypass_mode...). `read` parses it (a JSON error names its line), `problems` names each key
lycoris would not understand, with the fix. The names below are lycoris-lora's own
(lycoris/wrapper.py, lycoris/config_sdk.py); the trainer hands the file to it unchanged.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

KEY = "lora.lycoris_config"

ALGOS = ("lora", "locon", "loha", "lokr", "dylora", "glora", "full", "diag-oft", "boft", "ia3", "tlora")
# What ComfyUI's Flux loader reads from "lycoris_<layer>" keys (comfy/weight_adapter).
COMFYUI_ALGOS = ("lora", "locon", "loha", "lokr")
REQUIRED = ("linear_dim", "linear_alpha")
# create_lycoris' keyword arguments (deprecated spellings included: lycoris still maps them)
ARGS = {
    "algo": str,
    "multiplier": (int, float),
    "linear_dim": int,
    "linear_alpha": (int, float),
    "conv_dim": int,
    "conv_alpha": (int, float),
    "dropout": (int, float),
    "rank_dropout": (int, float),
    "module_dropout": (int, float),
    "use_tucker": bool,
    "use_cp": bool,
    "use_conv_cp": bool,
    "disable_conv_cp": bool,
    "use_scalar": bool,
    "block_size": int,
    "train_norm": bool,
    "constraint": (int, float),
    "constrain": (int, float),
    "rescaled": bool,
    "dora_wd": bool,
    "wd_on_output": bool,
    "full_matrix": bool,
    "bypass_mode": bool,
    "unbalanced_factorization": bool,
    "decompose_both": bool,
    "factor": int,
    "rs_lora": bool,
    "apply_preset": dict,
}
PRESET_KEYS = (
    "enable_conv",
    "target_module",
    "target_name",
    "module_algo_map",
    "name_algo_map",
    "lora_prefix",
    "use_fnmatch",
    "unet_target_module",
    "unet_target_name",
    "text_encoder_target_module",
    "text_encoder_target_name",
    "exclude_name",
)
# What a module_algo_map / name_algo_map entry may set for the layers it matches.
MODULE_ARGS = (
    "algo",
    "dim",
    "alpha",
    "factor",
    "use_tucker",
    "use_scalar",
    "decompose_both",
    "full_matrix",
    "weight_decompose",
    "wd_on_out",
    "bypass_mode",
    "rs_lora",
    "unbalanced_factorization",
    "rank_dropout_scale",
    "block_size",
    "constraint",
    "rescaled",
)
# Module classes of diffusers' FluxTransformer2DModel (target_module and module_algo_map match
# these; SimpleTuner's own Flux copy calls the attention "Attention").
FLUX_MODULE_CLASSES = (
    "FluxTransformer2DModel",
    "FluxTransformerBlock",
    "FluxSingleTransformerBlock",
    "FluxAttention",
    "FeedForward",
    "Linear",
    "GELU",
    "AdaLayerNormZero",
    "AdaLayerNormZeroSingle",
    "AdaLayerNormContinuous",
    "LayerNorm",
    "RMSNorm",
    "CombinedTimestepGuidanceTextProjEmbeddings",
    "CombinedTimestepTextProjEmbeddings",
    "TimestepEmbedding",
    "Timesteps",
    "PixArtAlphaTextProjection",
    "FluxPosEmbed",
    "ModuleList",
    "SiLU",
    "Dropout",
)


class LycorisConfigError(ValueError):
    def __init__(self, message: str, fix: str, line: int | None = None):
        super().__init__(message)
        self.message, self.fix, self.line = message, fix, line


def read(path: Path) -> dict[str, Any]:
    """The parsed file; LycorisConfigError when it is missing or not a JSON object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LycorisConfigError(
            f"{path} does not exist",
            "point lycoris_config at a LyCORIS JSON file (relative to the workspace), or remove it to use lokr_factor",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LycorisConfigError(f"{path} cannot be read: {exc}", "check the file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LycorisConfigError(
            f"{Path(path).name} line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})",
            "correct the JSON syntax (no trailing commas or comments)",
            exc.lineno,
        ) from None
    if not isinstance(data, dict):
        raise LycorisConfigError(
            f"{Path(path).name} holds a {type(data).__name__}, not a JSON object",
            'write an object such as {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 16}',
        )
    return data


def _hint(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f'did you mean "{match[0]}"?' if match else ""


def problems(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """(message, fix) for every key or value lycoris would refuse or misread."""
    out: list[tuple[str, str]] = []
    for key in REQUIRED:
        if key not in cfg:
            out.append((f'"{key}" is missing (SimpleTuner requires linear_dim and linear_alpha)', f'add "{key}"'))
    for key, value in cfg.items():
        if key == "preset":
            out.append(
                ('"preset" (a named lycoris preset) is not read by fluxtui', 'use "apply_preset" with target_module')
            )
            continue
        want = ARGS.get(key)
        if want is None:
            hint = _hint(key, ARGS)
            out.append((f'unknown key "{key}"', hint or "remove it; the keys are create_lycoris' arguments"))
            continue
        if not _is(value, want):
            out.append((f'"{key}" must be {_kind(want)}, got {json.dumps(value)}', f'fix the value of "{key}"'))
    algo = cfg.get("algo", "lora")
    if isinstance(algo, str) and algo.lower() not in ALGOS:
        out.append(
            (f'"algo": "{algo}" is not a LyCORIS algorithm', _hint(algo, ALGOS) or "use one of: " + ", ".join(ALGOS))
        )
    preset = cfg.get("apply_preset")
    if isinstance(preset, dict):
        out += _preset_problems(preset)
    return out


def _preset_problems(preset: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in preset:
        if key not in PRESET_KEYS:
            out.append(
                (f'unknown apply_preset key "{key}"', _hint(key, PRESET_KEYS) or "use: " + ", ".join(PRESET_KEYS))
            )
    classes = list(preset.get("target_module") or [])
    for name in ("module_algo_map", "name_algo_map"):
        table = preset.get(name, {})
        if not isinstance(table, dict):
            out.append((f"apply_preset.{name} must be an object", f'e.g. "{name}": {{"FeedForward": {{"factor": 4}}}}'))
            continue
        if name == "module_algo_map":
            classes += list(table)
        for target, conf in table.items():
            where = f"apply_preset.{name}.{target}"
            if not isinstance(conf, dict):
                out.append((f"{where} must be an object of settings", '{"factor": 4}'))
                continue
            for k in conf:
                if k not in MODULE_ARGS:
                    out.append(
                        (f'unknown key "{k}" in {where}', _hint(k, MODULE_ARGS) or "use: " + ", ".join(MODULE_ARGS))
                    )
            algo = conf.get("algo")
            if algo is not None and (not isinstance(algo, str) or algo.lower() not in ALGOS):
                out.append(
                    (
                        f'{where}: "algo": {json.dumps(algo)} is not a LyCORIS algorithm',
                        "use one of: " + ", ".join(ALGOS),
                    )
                )
    if not isinstance(preset.get("target_module", []), list):
        out.append(
            ("apply_preset.target_module must be a list of module class names", '["FluxAttention", "FeedForward"]')
        )
        classes = list(preset.get("module_algo_map") or {})
    for cls in classes:
        if isinstance(cls, str) and cls not in FLUX_MODULE_CLASSES:
            hint = "FluxAttention (diffusers' Flux attention class)" if cls == "Attention" else ""
            hint = hint or _hint(cls, FLUX_MODULE_CLASSES).removeprefix("did you mean ").rstrip("?").strip('"')
            out.append(
                (
                    f'module class "{cls}" is not in diffusers\' Flux transformer, so it matches no layer',
                    f"use {hint}" if hint else "use classes such as FluxAttention, FeedForward, Linear",
                )
            )
    return out


def _is(value: Any, want: Any) -> bool:
    kinds = want if isinstance(want, tuple) else (want,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _kind(want: Any) -> str:
    kinds = want if isinstance(want, tuple) else (want,)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "an object"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def prefix(cfg: dict[str, Any]) -> str:
    preset = cfg.get("apply_preset") or {}
    return str(preset.get("lora_prefix", "lycoris")) if isinstance(preset, dict) else "lycoris"


# SimpleTuner's Flux transformer builds its attention from diffusers' older `Attention` class
# (simpletuner/helpers/models/flux/transformer.py); diffusers' FluxTransformer2DModel, which
# fluxtui trains, calls the same layers FluxAttention. Import and export rename between them.
SIMPLETUNER_TO_DIFFUSERS = {"Attention": "FluxAttention"}
DIFFUSERS_TO_SIMPLETUNER = {v: k for k, v in SIMPLETUNER_TO_DIFFUSERS.items()}


def rename_classes(preset: Any, names: dict[str, str]) -> tuple[Any, bool]:
    """apply_preset with its module class names (target_module, module_algo_map) renamed."""
    if not isinstance(preset, dict):
        return preset, False
    out = dict(preset)
    targets = preset.get("target_module")
    if isinstance(targets, list):
        out["target_module"] = [names.get(c, c) if isinstance(c, str) else c for c in targets]
    table = preset.get("module_algo_map")
    if isinstance(table, dict):
        out["module_algo_map"] = {names.get(k, k): v for k, v in table.items()}
    return out, out != preset
