"""The model: quantisation, the packages options need, the LoRA and the flavour."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from ..schema import BY_DOTTED, OPTIMIZERS
from .base import (
    _missing_package,
    problem_at,
    rule,
)


@rule
def _quantisation(p: Project) -> list[Problem]:
    out = []
    base = p.model.base_model_precision
    if p.lora.lora_init_type == "loftq" and base.endswith("-quanto"):
        out.append(
            problem_at(
                p,
                f'lora_init_type = "loftq" cannot be used with a quanto base ({base})',
                "lora.lora_init_type",
                also=("model.base_model_precision",),
                fix='set lora_init_type = "default", or base_model_precision = "no_change"',
            )
        )
    if base == "nf4-bnb" and p.training.torch_compile:
        out.append(
            problem_at(
                p,
                'nf4-bnb weights cannot be compiled (torch_compile = true with base_model_precision = "nf4-bnb")',
                "training.torch_compile",
                also=("model.base_model_precision",),
                fix='set torch_compile = false, or base_model_precision = "int8-quanto" (int8 + compile is fastest)',
            )
        )
    if base == "nf4-bnb" and p.lora.lora_type == "lycoris":
        out.append(
            problem_at(
                p,
                'LoKr (lora_type = "lycoris") cannot wrap bitsandbytes\' packed 4-bit layers (nf4-bnb base)',
                "lora.lora_type",
                also=("model.base_model_precision",),
                fix='use base_model_precision = "int4-quanto" or "int8-quanto", or lora_type = "standard"',
            )
        )
    precisions = {
        "model.base_model_precision": base,
        "model.text_encoder_1_precision": p.model.text_encoder_1_precision,
        "model.text_encoder_2_precision": p.model.text_encoder_2_precision,
    }
    for key, value in precisions.items():
        module = "optimum.quanto" if value.endswith("-quanto") else "bitsandbytes" if value == "nf4-bnb" else None
        if module:
            out += _missing_package(p, module, key, f'{key.split(".")[1]} = "{value}"', 'use "no_change"')
    return out


@rule
def _packages(p: Project) -> list[Problem]:
    out = []
    module = OPTIMIZERS.get(p.training.optimizer)
    if module:
        out += _missing_package(
            p, module, "training.optimizer", f'optimizer "{p.training.optimizer}"', 'or optimizer = "torch-adamw"'
        )
    if p.training.attention_mechanism == "sageattention":
        out += _missing_package(
            p, "sageattention", "training.attention_mechanism", "sageattention", 'attention_mechanism = "sdpa"'
        )
    if p.logging.report_to != "none":
        out += _missing_package(
            p, p.logging.report_to, "logging.report_to", f'report_to = "{p.logging.report_to}"', 'report_to = "none"'
        )
    if p.lora.lora_type == "lycoris":
        out += _missing_package(p, "lycoris", "lora.lora_type", 'lora_type = "lycoris"', 'lora_type = "standard"')
    return out


@rule
def _lora(p: Project) -> list[Problem]:
    lora = p.lora
    out = []
    if lora.flux_lora_target == "all+ffs" and lora.lora_format == "diffusers":
        out.append(
            problem_at(
                p,
                "ComfyUI often fails to load all+ffs LoRAs saved in diffusers' format",
                "lora.lora_format",
                also=("lora.flux_lora_target",),
                severity="warning",
                fix='set lora_format = "comfyui" to also export a ComfyUI-ready file',
            )
        )
    # The template writes every option, so compare with the default rather than p.explicit.
    if lora.lora_type == "standard" and lora.lokr_factor != BY_DOTTED["lora.lokr_factor"].default:
        out.append(
            problem_at(
                p,
                'lokr_factor only applies to lora_type = "lycoris"',
                "lora.lokr_factor",
                severity="warning",
                fix='remove lokr_factor, or set lora_type = "lycoris"',
            )
        )
    if lora.init_lora and not p.resolve(lora.init_lora).exists():
        out.append(
            problem_at(
                p,
                f"init_lora file {lora.init_lora} does not exist",
                "lora.init_lora",
                fix="point init_lora at a .safetensors LoRA file (relative to the workspace), or remove it",
            )
        )
    return out


@rule
def _flavour(p: Project) -> list[Problem]:
    flavour = p.model.model_flavour
    guidance_real = p.validation.validation_guidance_real
    out = []
    if flavour == "fluxbooru" and guidance_real <= 1:
        out.append(
            problem_at(
                p,
                "fluxbooru is de-distilled: validation images need real CFG (validation_guidance_real > 1)",
                "validation.validation_guidance_real",
                severity="warning",
                fix="set validation_guidance_real = 3.5",
            )
        )
    elif p.training.flux_guidance_value > 1 and guidance_real <= 1:
        out.append(
            problem_at(
                p,
                f"flux_guidance_value = {p.training.flux_guidance_value:g} re-introduces CFG, but validation "
                "runs without it (validation_guidance_real <= 1): samples will look washed out",
                "validation.validation_guidance_real",
                also=("training.flux_guidance_value",),
                severity="warning",
                fix="set validation_guidance_real = 3.5, or flux_guidance_value = 1.0",
            )
        )
    if flavour == "libreflux" and not p.training.flux_attention_masked_training:
        out.append(
            problem_at(
                p,
                "libreflux was trained with T5 attention masking; without it the LoRA drifts",
                "training.flux_attention_masked_training",
                severity="warning",
                fix="set flux_attention_masked_training = true",
            )
        )
    max_len = p.model.tokenizer_max_length
    if flavour == "schnell" and max_len is not None and max_len > 256:
        out.append(
            problem_at(
                p,
                f"schnell's T5 sequence length is 256, got tokenizer_max_length = {max_len}",
                "model.tokenizer_max_length",
                fix="set tokenizer_max_length = 256, or remove it",
            )
        )
    return out
