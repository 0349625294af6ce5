"""The model: quantisation, the packages options need, the LoRA and the flavour."""

from __future__ import annotations

from ..config import Project
from ..problems import Problem
from ..safetensors_header import HeaderError, lora_layout, read_header
from ..schema import BY_DOTTED, OPTIMIZERS, flux_guidance_value
from .base import (
    _missing_package,
    problem_at,
    rule,
    visible_gpu_count,
)

# lora_init_type values that decompose the base weights to start the adapter
DECOMPOSING_INITS = ("loftq", "olora", "pissa")


@rule
def _quantisation(p: Project) -> list[Problem]:
    out = []
    base = p.model.base_model_precision
    init = p.lora.lora_init_type
    if init in DECOMPOSING_INITS and base != "no_change" and p.lora.lora_type == "standard":
        out.append(
            problem_at(
                p,
                f'lora_init_type = "{init}" rewrites the base weights, which cannot be done on a quantised '
                f"base ({base})",
                "lora.lora_init_type",
                also=("model.base_model_precision",),
                fix='set lora_init_type = "default", or base_model_precision = "no_change"',
            )
        )
    elif init in DECOMPOSING_INITS and p.lora.lora_type == "standard" and not visible_gpu_count():
        cuda_only = init == "loftq"  # peft's LoftQ quantises on CUDA; PiSSA/OLoRA are an SVD/QR
        if cuda_only or p.model.model_flavour != "tiny-random":
            out.append(
                problem_at(
                    p,
                    f'lora_init_type = "{init}" '
                    + (
                        "runs its quantisation on a CUDA GPU, and none is visible"
                        if cuda_only
                        else "decomposes every targeted 3072-wide weight in float32: without a CUDA GPU "
                        "that takes hours"
                    ),
                    "lora.lora_init_type",
                    fix='set lora_init_type = "default" here, or run on a machine with a CUDA GPU',
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
    if lora.init_lora:
        out += _init_lora(p)
    return out


def _init_lora(p: Project) -> list[Problem]:
    """init_lora: the file exists, is a LoRA of a format the trainer loads, and its rank is
    lora_rank. Only the safetensors header is read."""
    lora, key = p.lora, "lora.init_lora"
    path = p.resolve(lora.init_lora)
    if lora.lora_type == "lycoris":
        return [
            problem_at(
                p,
                'init_lora starts a standard LoRA; it cannot seed a LoKr (lora_type = "lycoris")',
                key,
                also=("lora.lora_type",),
                fix='remove init_lora, or set lora_type = "standard"',
            )
        ]
    if not path.exists():
        return [
            problem_at(
                p,
                f"init_lora file {lora.init_lora} does not exist",
                key,
                fix="point init_lora at a .safetensors LoRA file (relative to the workspace), or remove it",
            )
        ]
    try:
        layout, rank = lora_layout(read_header(path))
    except HeaderError as exc:
        return [problem_at(p, f"init_lora file {lora.init_lora} is {exc}", key, fix="use a .safetensors LoRA file")]
    if layout not in ("diffusers", "kohya") or rank is None:
        what = "a LyCORIS LoKr" if layout == "lokr" else "no LoRA weights (lora_A/lora_B or lora_down/lora_up)"
        return [
            problem_at(
                p,
                f"init_lora file {lora.init_lora} holds {what}; fluxtui starts from diffusers, peft or "
                "kohya/ComfyUI LoRA files",
                key,
                fix="use a LoRA saved by fluxtui, diffusers or kohya, or remove init_lora",
            )
        ]
    if rank != lora.lora_rank:
        return [
            problem_at(
                p,
                f"init_lora file {lora.init_lora} has rank {rank} but lora_rank = {lora.lora_rank}",
                key,
                also=("lora.lora_rank",),
                fix=f"set lora_rank = {rank} to continue from it",
            )
        ]
    return []


def _training_guidance_above_1(p: Project) -> bool:
    t = p.training
    if t.flux_guidance_mode == "random-range":
        return t.flux_guidance_max > 1
    return flux_guidance_value(t, p.model.model_flavour) > 1


def _training_guidance_text(p: Project) -> str:
    t = p.training
    if t.flux_guidance_mode == "random-range":
        return f"(random-range {t.flux_guidance_min:g} .. {t.flux_guidance_max:g})"
    return f"(flux_guidance_value = {flux_guidance_value(t, p.model.model_flavour):g})"


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
    elif _training_guidance_above_1(p) and guidance_real <= 1:
        ranged = p.training.flux_guidance_mode == "random-range"
        out.append(
            problem_at(
                p,
                f"training guidance {_training_guidance_text(p)} re-introduces CFG, but validation "
                "runs without it (validation_guidance_real <= 1): samples will look washed out",
                "validation.validation_guidance_real",
                also=("training.flux_guidance_max", "training.flux_guidance_mode")
                if ranged
                else ("training.flux_guidance_value",),
                severity="warning",
                fix="set validation_guidance_real = 3.5, or "
                + ("flux_guidance_max = 1.0" if ranged else "flux_guidance_value = 1.0"),
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
