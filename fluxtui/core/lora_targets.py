"""`flux_lora_target` presets: which layers of FluxTransformer2DModel get a LoRA.

The one declaration of the presets: the trainer (trainer/lora.py) applies
`lora_target_modules` to the real model's module names, the estimate to `flux_arch`'s list.

A preset is a tuple of module-name suffixes. A suffix matches a module when the name equals it
or ends with "." + suffix, and only inside the transformer blocks: adapters never go on the
embedders or the model's top-level `proj_out`/`norm_out` (so `proj_out` in `all+ffs` means the
single blocks' `proj_out`). Suffixes match in every block that has the layer: `to_q` is in the
double blocks and in the single blocks.

Full-size rank-16 counts (SPEC.md): `all` 26,148,864 parameters on 266 layers; `all+ffs`
65,372,160 on 418 layers.
"""

from __future__ import annotations

from collections.abc import Iterable

from .flux_arch import FLUX_FULL, FluxConfig, Linear, block_of, transformer_linears

__all__ = ["LORA_TARGET_PRESETS", "lora_target_linears", "lora_target_modules", "matches"]

_MMDIT = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0")
_CONTEXT = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out")
_CONTEXT_FFS = ("ff_context.net.0.proj", "ff_context.net.2")
_FFS = ("ff.net.0.proj", "ff.net.2", *_CONTEXT_FFS, "proj_mlp", "proj_out")

LORA_TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "mmdit": _MMDIT,
    "context": _CONTEXT,
    "context+ffs": _CONTEXT + _CONTEXT_FFS,
    "all": _MMDIT + _CONTEXT,
    "all+ffs": _MMDIT + _CONTEXT + _FFS,
    "tiny": ("single_transformer_blocks.7.proj_out", "single_transformer_blocks.20.proj_out"),
    "nano": ("single_transformer_blocks.7.proj_out",),
}


def matches(name: str, suffix: str) -> bool:
    """Whether module `name` is the layer `suffix` names (inside a transformer block)."""
    if block_of(name) is None:
        return False
    return name == suffix or name.endswith("." + suffix)


def lora_target_modules(names: Iterable[str], preset: str) -> list[str]:
    """The full module names among `names` that get an adapter for `preset`, in input order.

    Pass the names of the model's nn.Linear layers (or all of `named_modules()`: only layer
    names can match). Give the result to peft as `target_modules`: full names match exactly.
    An empty list means the preset fits no layer of this model (e.g. `tiny` on a model with
    fewer than 8 single blocks). Raises KeyError for an unknown preset.
    """
    try:
        suffixes = LORA_TARGET_PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown flux_lora_target {preset!r}; choose from {', '.join(LORA_TARGET_PRESETS)}") from None
    return [n for n in names if any(matches(n, s) for s in suffixes)]


def lora_target_linears(preset: str, cfg: FluxConfig = FLUX_FULL) -> list[Linear]:
    """The Linear layers of the Flux architecture `cfg` that `preset` puts an adapter on."""
    layers = transformer_linears(cfg)
    chosen = set(lora_target_modules([lin.name for lin in layers], preset))
    return [lin for lin in layers if lin.name in chosen]
