"""The trainable adapter: peft LoRA (or LyCORIS LoKr) on the frozen Flux transformer, and its
file formats.

- ``add_lora`` freezes the transformer, adds the adapter on the preset's layers and returns the
  trainable parameters. Adapter weights are kept in fp32 whatever the base is (bf16, quanto,
  NF4): they are a few hundred MB at most, and fp32 master weights train best.
- ``lora_state_dict`` / ``save_lora``: diffusers format, keys ``transformer.<module>.lora_A.weight``,
  loadable by ``FluxPipeline.load_lora_weights``; the LoraConfig (rank, alpha) rides along in the
  safetensors metadata as diffusers writes it. ``comfyui=True`` adds a kohya-format copy
  (``lora_unet_double_blocks_0_img_attn_qkv...``), see ``comfyui.py``.
- ``load_lora_state`` restores a state dict from ``lora_state_dict`` (resume).
- ``set_adapter_enabled`` switches the adapter off for regularisation targets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from . import assistant
from .models import ModelLoadError
from .quantise import is_quantised

__all__ = [
    "COMFYUI_FILE",
    "LORA_FILE",
    "LoraError",
    "add_lora",
    "load_lora_file",
    "load_lora_state",
    "lora_state_dict",
    "save_lora",
    "set_adapter_enabled",
    "target_modules",
]

LORA_FILE = "pytorch_lora_weights.safetensors"
COMFYUI_FILE = "pytorch_lora_weights_comfyui.safetensors"
ADAPTER = "default"
PREFIX = "transformer."

# Where add_lora leaves what later calls need, on the transformer itself (set with
# object.__setattr__ so that nn.Module does not register it as a submodule).
_STATE_ATTR = "_fluxtui_adapter"


class LoraError(ModelLoadError):
    """A LoRA option cannot be honoured; ``message`` names the option and the fix."""


class _AdapterState:
    def __init__(self, kind: str, config: Any = None, network: Any = None):
        self.kind = kind  # "standard" or "lycoris"
        self.config = config  # peft LoraConfig
        self.network = network  # lycoris network
        # PiSSA/OLoRA move part of the base weights into the adapter at init. The saved LoRA
        # must apply to the *original* base: keep the initial adapter to convert on save.
        self.initial: dict[str, torch.Tensor] | None = None
        self.stashed: dict[str, torch.Tensor] | None = None  # trained values while switched off


def _state(transformer: Any) -> _AdapterState:
    state = getattr(transformer, _STATE_ATTR, None)
    if state is None:
        raise RuntimeError("this transformer has no fluxtui adapter; call add_lora first")
    return state


# --------------------------------------------------------------------------- presets


def target_modules(names: list[str], preset: str) -> list[str]:
    """Full module names that get an adapter for ``preset`` (presets: core/lora_targets.py)."""
    from fluxtui.core.lora_targets import lora_target_modules

    return lora_target_modules(names, preset)


# --------------------------------------------------------------------------- adding


_INIT = {"default": True, "gaussian": "gaussian", "loftq": "loftq", "olora": "olora", "pissa": "pissa"}


def add_lora(transformer: Any, project: Any, *, log: Any = print) -> list[torch.nn.Parameter]:
    """Freeze ``transformer``, add the configured adapter (and the frozen assistant LoRA when the
    run has one, see assistant.py), return the trainable parameters."""
    lc = project.lora
    transformer.requires_grad_(False)
    names = [name for name, _ in transformer.named_modules()]
    targets = target_modules(names, lc.flux_lora_target)
    if not targets:
        raise LoraError(
            f"`lora.flux_lora_target` = {lc.flux_lora_target!r} matches no layer of this transformer "
            f"({transformer.config.num_layers} double, {transformer.config.num_single_layers} single blocks). "
            "Choose a preset such as all.",
            "lora.flux_lora_target",
        )
    if lc.lora_type == "lycoris":
        params = _add_lokr(transformer, project, targets)
    else:
        params = _add_peft(transformer, project, targets)
    if lc.init_lora:
        load_lora_file(transformer, project.resolve(lc.init_lora), key="lora.init_lora")
    # After the trained adapter: LyCORIS hooks plain Linear layers, which peft then wraps.
    assistant.load(transformer, project, log=log)
    return params


def _alpha(lc: Any) -> float:
    return float(lc.lora_alpha) if lc.lora_alpha is not None else float(lc.lora_rank)


def _add_peft(transformer: Any, project: Any, targets: list[str]) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    lc = project.lora
    init = _INIT[lc.lora_init_type]
    quant = is_quantised(transformer)
    if init in ("loftq", "pissa", "olora") and quant:
        raise LoraError(
            f"`lora.lora_init_type` = {lc.lora_init_type!r} rewrites the base weights, which cannot be done "
            f"on a quantised base (`model.base_model_precision` = {project.model.base_model_precision!r}). "
            'Use lora_init_type "default" or "gaussian", or base_model_precision "no_change".',
            "lora.lora_init_type",
        )
    extra: dict[str, Any] = {}
    device = next(transformer.parameters()).device
    if init == "loftq" and device.type != "cuda":
        raise LoraError(
            '`lora.lora_init_type` = "loftq" runs its quantisation on a CUDA GPU (peft\'s LoftQ), and this '
            f"transformer is on {device.type}. Use another init type here.",
            "lora.lora_init_type",
        )
    if init == "loftq":
        from peft import LoftQConfig

        extra["loftq_config"] = LoftQConfig(loftq_bits=4, loftq_iter=1)
    config = LoraConfig(
        r=lc.lora_rank,
        lora_alpha=_alpha(lc),
        lora_dropout=lc.lora_dropout,
        target_modules=targets,
        init_lora_weights=init,
        **extra,
    )
    state = _AdapterState("standard", config=config)
    if init in ("pissa", "olora", "loftq"):
        # These decompose the base weights in place; peft needs them in float32 for the SVD/QR.
        _upcast_targets(transformer, targets)
    with torch.device(device):  # adapter weights are born where the base lives (fast init on GPU)
        transformer.add_adapter(config, adapter_name=ADAPTER)
    if init in ("pissa", "olora", "loftq"):
        _downcast_targets(transformer, targets)
    params = _adapter_params(transformer)
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    if init in ("pissa", "olora", "loftq"):
        state.initial = {k: v.detach().clone().cpu() for k, v in _raw_adapter_state(transformer).items()}
    object.__setattr__(transformer, _STATE_ATTR, state)
    return params


def _upcast_targets(transformer: Any, targets: list[str]) -> None:
    dtypes = {}
    for name in targets:
        mod = transformer.get_submodule(name)
        dtypes[name] = mod.weight.dtype
        mod.to(torch.float32)
    object.__setattr__(transformer, "_fluxtui_base_dtypes", dtypes)


def _downcast_targets(transformer: Any, targets: list[str]) -> None:
    dtypes = getattr(transformer, "_fluxtui_base_dtypes", {})
    for name in targets:
        base = transformer.get_submodule(name).base_layer
        base.to(dtypes.get(name, torch.float32))


def _adapter_params(transformer: Any) -> list[torch.nn.Parameter]:
    return [p for n, p in transformer.named_parameters() if ".lora_" in n and f".{ADAPTER}." in n]


def _raw_adapter_state(transformer: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer, adapter_name=ADAPTER)


# --------------------------------------------------------------------------- LoKr


def _add_lokr(transformer: Any, project: Any, targets: list[str]) -> list[torch.nn.Parameter]:
    """LyCORIS on the transformer: the lycoris_config file as SimpleTuner hands it to lycoris
    (multiplier, linear_dim, linear_alpha, apply_preset, the rest create_lycoris' keywords), or
    without one LoKr (lokr_factor, lora_rank, lora_alpha) on exactly the preset's layers.
    Quantised layers run in bypass mode."""
    import re

    from lycoris import LycorisNetwork, create_lycoris

    lc = project.lora
    if lc.init_lora:
        raise LoraError("`lora.init_lora` works with lora_type = standard only.", "lora.init_lora")
    # The preset lives on lycoris' class: set all of it every time so nothing leaks between calls.
    preset: dict[str, Any] = {
        "target_module": [],
        "target_name": [re.escape(name) + "$" for name in targets],
        "module_algo_map": {},
        "name_algo_map": {},
        "use_fnmatch": False,
        "exclude_name": [],
        "lora_prefix": "lycoris",
    }
    kwargs: dict[str, Any] = {
        "multiplier": 1.0,
        "linear_dim": lc.lora_rank,
        "linear_alpha": _alpha(lc),
        "algo": "lokr",
        "factor": lc.lokr_factor,
        "dropout": lc.lora_dropout,
    }
    if lc.lycoris_config:
        from fluxtui.core import lycoris_config

        cfg = dict(lycoris_config.read(project.resolve(lc.lycoris_config)))  # checked by core.rules
        user_preset = cfg.pop("apply_preset", None)
        if user_preset:
            preset = {**preset, "target_name": [], **user_preset}
        kwargs = cfg
    LycorisNetwork.apply_preset(preset)
    device = next(transformer.parameters()).device
    with _quiet_lycoris():
        network = create_lycoris(
            transformer,
            kwargs.pop("multiplier", 1.0),
            kwargs.pop("linear_dim"),
            kwargs.pop("linear_alpha"),
            preset="full",  # the default preset; apply_preset above already set the targets
            warn_on_unmatched=False,
            **kwargs,
        )
        network.apply_to()
    if not network.loras:
        raise LoraError(
            f"`lora.lycoris_config` ({lc.lycoris_config}) matches no layer of this transformer: check "
            "apply_preset's target_module / target_name (module classes: FluxAttention, FeedForward, Linear).",
            "lora.lycoris_config",
        )
    network.to(device=device, dtype=torch.float32)
    params = [p for p in network.parameters()]
    for p in params:
        p.requires_grad_(True)
    object.__setattr__(transformer, _STATE_ATTR, _AdapterState("lycoris", network=network))
    return params


@contextlib.contextmanager
def _quiet_lycoris() -> Iterator[None]:
    """lycoris logs a line per step of its setup at INFO; keep its warnings only."""
    import logging

    from lycoris.logging import logger

    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- state dicts


def lora_state_dict(transformer: Any) -> dict[str, torch.Tensor]:
    """The adapter in diffusers format (keys start with ``transformer.``), detached, on the CPU.

    For PiSSA/OLoRA/LoftQ the adapter is converted to apply to the original base weights
    (rank doubles), so the file works with the unmodified model like any other LoRA.
    """
    state = _state(transformer)
    if state.kind == "lycoris":
        return {k: v.detach().cpu() for k, v in state.network.state_dict().items()}
    raw = {k: v.detach().cpu() for k, v in _raw_adapter_state(transformer).items()}
    if state.initial is not None:
        raw = _relative_to_original(raw, state.initial)
    return {PREFIX + k: v for k, v in raw.items()}


def _relative_to_original(
    current: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    # W_base' = W - s*B0@A0 was stored; W_base' + s*B@A = W + s*(B@A - B0@A0) = W + s*[B, -B0]@[A; A0].
    out = {}
    for key, value in current.items():
        if ".lora_A." in key:
            out[key] = torch.cat([value, initial[key].to(value.dtype)], dim=0)
        elif ".lora_B." in key:
            out[key] = torch.cat([value, -initial[key].to(value.dtype)], dim=1)
        else:
            out[key] = value
    return out


def _metadata(transformer: Any) -> dict[str, Any] | None:
    state = _state(transformer)
    if state.kind != "standard":
        return None
    meta = state.config.to_dict()
    meta = json.loads(json.dumps(meta, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    if state.initial is not None:  # saved at doubled rank with the same scale
        meta["r"] = state.config.r * 2
        meta["lora_alpha"] = state.config.lora_alpha * 2
    meta["init_lora_weights"] = True
    meta.pop("loftq_config", None)
    return meta


def load_lora_state(transformer: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a state dict from ``lora_state_dict`` into the adapter (resume)."""
    state = _state(transformer)
    if state.kind == "lycoris":
        state.network.load_state_dict(state_dict)
        return
    from peft.utils import set_peft_model_state_dict

    raw = {k.removeprefix(PREFIX): v for k, v in state_dict.items()}
    if state.initial is not None:  # undo the rank doubling of _relative_to_original
        r = state.config.r
        raw = {k: (v[:r] if ".lora_A." in k else v[:, :r] if ".lora_B." in k else v) for k, v in raw.items()}
    result = set_peft_model_state_dict(transformer, raw, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise LoraError(f"the saved adapter has layers this one does not: {unexpected[:3]}...", "lora.flux_lora_target")


def save_lora(transformer: Any, out_dir: Path, *, comfyui: bool = False) -> list[Path]:
    """Write ``pytorch_lora_weights.safetensors`` (+ the ComfyUI copy); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = lora_state_dict(transformer)
    state = _state(transformer)
    paths = [out_dir / LORA_FILE]
    if state.kind == "lycoris":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, paths[0], metadata={"format": "pt"})
    else:
        from diffusers.loaders import FluxLoraLoaderMixin

        FluxLoraLoaderMixin.save_lora_weights(
            out_dir,
            transformer_lora_layers={k.removeprefix(PREFIX): v.contiguous() for k, v in sd.items()},
            transformer_lora_adapter_metadata=_metadata(transformer),
        )
    if comfyui:
        from safetensors.torch import save_file

        path = out_dir / COMFYUI_FILE
        if state.kind == "lycoris":
            # ComfyUI reads lycoris' own "lycoris_<diffusers name>" keys for Flux as they are.
            save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})
        else:
            from .comfyui import to_comfyui

            alpha = (_metadata(transformer) or {}).get("lora_alpha")
            save_file(to_comfyui(sd, alpha=alpha), path, metadata={"format": "pt"})
        paths.append(path)
    return paths


def load_lora_file(transformer: Any, path: Path, *, key: str = "lora.init_lora") -> None:
    """Fill the fresh adapter from a LoRA file (diffusers, peft or kohya/ComfyUI format)."""
    path = Path(path)
    if not path.is_file():
        raise LoraError(f"`{key}`: {path} does not exist. Give the path of a .safetensors LoRA file.", key)
    from diffusers.loaders import FluxLoraLoaderMixin

    try:
        sd, _alphas, meta = FluxLoraLoaderMixin.lora_state_dict(
            str(path), return_alphas=True, return_lora_metadata=True
        )
    except Exception as exc:
        raise LoraError(f"`{key}`: {path} is not a LoRA file diffusers can read: {exc}", key) from exc
    sd = {k: v for k, v in sd.items() if k.startswith(PREFIX)}
    if not sd:
        raise LoraError(f"`{key}`: {path} holds no transformer LoRA weights.", key)
    state = _state(transformer)
    if state.kind != "standard":
        raise LoraError(f"`{key}` works with lora_type = standard only.", key)
    file_rank = next(v.shape[0] for k, v in sd.items() if ".lora_A." in k)
    if file_rank != state.config.r:
        raise LoraError(
            f"`{key}`: {path.name} has rank {file_rank} but `lora.lora_rank` = {state.config.r}. "
            f"Set lora_rank = {file_rank} to continue from it.",
            key,
        )
    file_alpha = (meta or {}).get("transformer.lora_alpha") or (meta or {}).get("lora_alpha") or file_rank
    ratio = (float(file_alpha) / file_rank) / (state.config.lora_alpha / state.config.r)
    own = {k for k in _raw_adapter_state(transformer)}
    raw = {}
    for k, v in sd.items():
        k = k.removeprefix(PREFIX)
        if ".lora_B." in k and ratio != 1.0:
            v = v * ratio  # same effective delta under this adapter's alpha
        raw[k] = v
    missing_layers = sorted({k.rsplit(".lora_", 1)[0] for k in raw} - {k.rsplit(".lora_", 1)[0] for k in own})
    if missing_layers:
        raise LoraError(
            f"`{key}`: {path.name} adapts layers that `lora.flux_lora_target` does not target "
            f"(e.g. {missing_layers[0]}). Use the preset it was trained with.",
            key,
        )
    from peft.utils import set_peft_model_state_dict

    set_peft_model_state_dict(transformer, raw, adapter_name=ADAPTER)
    for p in _adapter_params(transformer):
        p.data = p.data.float()


def set_adapter_enabled(transformer: Any, enabled: bool) -> None:
    """Switch the adapter on or off (off: the base model's own prediction).

    PiSSA/OLoRA/LoftQ moved part of the base into the adapter, so "off" cannot simply skip the
    adapter: it puts the initial adapter back in place (residual base + initial adapter = the
    original base) and "on" restores the trained values. Switch it back on before backward.
    """
    state = _state(transformer)
    helper = assistant.loaded(transformer)
    if helper is not None and not enabled:  # the base's own prediction: the assistant is off too
        assistant.use(transformer, 0.0)
    if state.kind == "lycoris":
        state.network.set_multiplier(1.0 if enabled else 0.0)
    elif state.initial is not None:
        from peft.utils import set_peft_model_state_dict

        if not enabled and state.stashed is None:
            state.stashed = {k: v.detach().clone() for k, v in _raw_adapter_state(transformer).items()}
            set_peft_model_state_dict(transformer, state.initial, adapter_name=ADAPTER)
        elif enabled and state.stashed is not None:
            set_peft_model_state_dict(transformer, state.stashed, adapter_name=ADAPTER)
            state.stashed = None
    elif enabled:
        transformer.enable_adapters()
    else:
        transformer.disable_adapters()
    if helper is not None and enabled:
        assistant.use(transformer, helper.strength)
