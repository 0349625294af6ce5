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


def quantise(
    module: torch.nn.Module,
    precision: str,
    *,
    exclude: Iterable[str] = (),
    device: torch.device | str | None = None,
) -> None:
    """Quantise ``module``'s Linear layers in place to ``precision`` (a schema PRECISIONS value).

    ``exclude``: fnmatch patterns on module names (``proj_out`` matches only the top-level one,
    ``*.proj_out`` every block's). ``no_change`` does nothing (but still moves to ``device``).

    ``device``: move the module there *while* quantising, one block at a time (each element of a
    ModuleList, and every other top-level part): a block goes to the device in full precision,
    is quantised there, and only then does the next one follow. Peak memory on the device is the
    quantised model plus one full-precision block, never the whole full-precision model.
    Without ``device`` the module is quantised where it is.
    """
    patterns = [*exclude, *ADAPTER_PATTERNS]
    if precision not in QUANTO_WEIGHTS and precision not in ("nf4-bnb", "no_change"):
        raise ValueError(f"unknown precision {precision!r}")
    units = [""] if device is None else _units(module)
    for unit in units:
        part = module.get_submodule(unit) if unit else module
        if device is not None:
            part.to(device)
        include = [unit, f"{unit}.*"] if unit else None
        if precision in QUANTO_WEIGHTS:
            _quanto(module, part, QUANTO_WEIGHTS[precision], include, patterns)
        elif precision == "nf4-bnb":
            _nf4(module, include, patterns)
    if device is not None:
        module.to(device)  # whatever sits outside the units (root parameters, buffers)
    if precision != "no_change":
        module.requires_grad_(False)


def _units(module: torch.nn.Module, prefix: str = "") -> list[str]:
    """Names of the parts moved one at a time: ModuleList elements, else the smallest parts
    that hold no ModuleList."""
    out: list[str] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, torch.nn.ModuleList):
            out += [f"{full}.{i}" for i in range(len(child))]
        elif any(isinstance(m, torch.nn.ModuleList) for m in child.modules()):
            out += _units(child, f"{full}.")
        else:
            out.append(full)
    return out


def _quanto(
    root: torch.nn.Module, part: torch.nn.Module, weights: str, include: list[str] | None, exclude: list[str]
) -> None:
    from optimum.quanto import freeze, quantize

    quantize(root, weights=weights, include=include, exclude=exclude)
    freeze(root.get_submodule(include[0]) if include else root)  # the part may have been replaced


def _nf4(module: torch.nn.Module, include: list[str] | None, exclude: list[str]) -> None:
    import bitsandbytes as bnb

    targets = [
        (name, child)
        for name, child in module.named_modules()
        if type(child) is torch.nn.Linear
        and not any(fnmatch(name, p) for p in exclude)
        and (include is None or any(fnmatch(name, p) for p in include))
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
