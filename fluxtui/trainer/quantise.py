"""Quantise a frozen module in place: optimum-quanto (int8/int4/int2/fp8) or bitsandbytes NF4.

quanto: ``quantize`` + ``freeze`` turns every nn.Linear into a QLinear with packed weights.
A peft LoRA added afterwards wraps the QLinear and trains (its own weights stay float).

nf4-bnb: every nn.Linear becomes a bitsandbytes ``Linear4bit`` (NF4). The weights are packed
the first time the module is moved with ``.to(device)``, which works on a CPU too; this module
calls that itself, on the device the weights are already on. diffusers' BitsAndBytesConfig is
not used: it refuses to run without CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch

import torch

from fluxtui.core.flux_arch import QUANTISE_EXCLUDE

__all__ = ["QUANTO_WEIGHTS", "TRANSFORMER_EXCLUDE", "is_quantised", "quantise"]

QUANTO_WEIGHTS = {
    "int8-quanto": "qint8",
    "int4-quanto": "qint4",
    "int2-quanto": "qint2",
    "fp8-quanto": "qfloat8",
}

# Layers of FluxTransformer2DModel kept in full precision: the input and output projections and
# the final modulation are tiny and quality-critical. Adapter weights are never quantised.
TRANSFORMER_EXCLUDE = QUANTISE_EXCLUDE
ADAPTER_PATTERNS = ("*lora_A*", "*lora_B*", "*lora_embedding*", "*lora_magnitude*")


def quantise(module: torch.nn.Module, precision: str, *, exclude: Iterable[str] = ()) -> None:
    """Quantise ``module``'s Linear layers in place to ``precision`` (a schema PRECISIONS value).

    ``exclude``: fnmatch patterns on module names (``proj_out`` matches only the top-level one,
    ``*.proj_out`` every block's). ``no_change`` does nothing.
    """
    patterns = [*exclude, *ADAPTER_PATTERNS]
    if precision == "no_change":
        return
    if precision in QUANTO_WEIGHTS:
        _quanto(module, QUANTO_WEIGHTS[precision], patterns)
    elif precision == "nf4-bnb":
        _nf4(module, patterns)
    else:
        raise ValueError(f"unknown precision {precision!r}")
    module.requires_grad_(False)


def _quanto(module: torch.nn.Module, weights: str, exclude: list[str]) -> None:
    from optimum.quanto import freeze, quantize

    quantize(module, weights=weights, exclude=exclude)
    freeze(module)


def _nf4(module: torch.nn.Module, exclude: list[str]) -> None:
    import bitsandbytes as bnb

    targets = [
        (name, child)
        for name, child in module.named_modules()
        if type(child) is torch.nn.Linear and not any(fnmatch(name, p) for p in exclude)
    ]
    for name, linear in targets:
        weight = linear.weight
        q = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=weight.dtype,
            quant_type="nf4",
            device="meta",
        )
        q.weight = bnb.nn.Params4bit(weight.data, requires_grad=False, quant_type="nf4")
        if linear.bias is not None:
            q.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        q = q.to(weight.device)  # packs the weights (on this device, CPU included)
        owner, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(owner) if owner else module, leaf, q)


def is_quantised(module: torch.nn.Module) -> str | None:
    """ "quanto", "bnb" or None: which kind of quantised layers ``module`` holds."""
    for child in module.modules():
        cls = type(child)
        if cls.__module__.startswith("optimum.quanto"):
            return "quanto"
        if cls.__module__.startswith("bitsandbytes") and cls.__name__ == "Linear4bit":
            return "bnb"
    return None
