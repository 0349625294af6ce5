"""SimpleTuner's config keys and where each one lives in fluxtui: one table.

Every key of SimpleTuner's config.json / config.toml / config.env (after its env names are
mapped to option names) and of its multidatabackend.json entries gets one Name:
  - target: the fluxtui option it becomes ("training.checkpointing_steps"; "datasets.<key>"
    for keys copied into every [[datasets]] table), or None;
  - dropped: why the key needs no place here (e.g. output_dir: outputs live in outputs/<run>);
  - unsupported: what fluxtui lacks (e.g. num_eval_images: no evaluation metrics).
Options that carry SimpleTuner's own name need no row: they come from OPTIONS. Values are
converted from SimpleTuner's loose forms ("true", "1e-4", "1024x1024,1280x768") by the
option's kind (`convert`).

Read from SimpleTuner's argument parser and env_file mapping (bghira/SimpleTuner,
simpletuner/helpers/configuration/); no code of it is used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .schema import OPTIONS, Option, options_in


@dataclass(frozen=True)
class Name:
    key: str
    target: str | None = None  # dotted fluxtui option
    dropped: str | None = None
    unsupported: str | None = None
    # The value this key may have to be dropped rather than refused (e.g. controlnet = false):
    # any other value is unsupported with `unsupported` as the reason.
    dropped_if: Any = None

    def place(self) -> str:
        """Where the key lives in fluxtui, for messages: "[training] checkpointing_steps"."""
        if self.target is None:
            return ""
        section, key = self.target.rsplit(".", 1)
        if section == "datasets":
            return f"each [[datasets]] table's {key}"
        return f"[{section}] {key}"


_OTHER_FAMILY = "an option of another model family; fluxtui trains Flux only"
_BY_STEP = "fluxtui checkpoints and validates by step (checkpointing_steps, validation_steps)"
_NO_EVAL = "fluxtui computes no evaluation metrics; it makes validation images only"
_OWN_LOADER = "a data-loader tuning knob; fluxtui sizes its data loading itself"
_OWN_CARD = "fluxtui writes its own model card"

# Global options SimpleTuner applies to every dataset that does not set its own.
DATASET_DEFAULTS = (
    "resolution",
    "resolution_type",
    "minimum_image_size",
    "maximum_image_size",
    "target_downsample_size",
    "crop",
    "crop_style",
    "crop_aspect",
    "crop_aspect_buckets",
)

# Keys SimpleTuner spells differently from fluxtui (older and newer names alike).
_RENAMED = {
    "checkpoint_step_interval": "training.checkpointing_steps",
    "validation_step_interval": "validation.validation_steps",
    "flux_schedule_shift": "training.flow_schedule_shift",
    "flux_schedule_auto_shift": "training.flow_schedule_auto_shift",
    "tracker_run_name": "project.name",
    "write_batch_size": "text_embeds.write_batch_size",
}

# Keys whose files or tables the importer reads (core/simpletuner_import.py). lycoris_config is
# followed too, but has its own row: [lora] lycoris_config reads the same file.
FOLLOWED = {
    "data_backend_config": "its datasets became [[datasets]] tables",
}

_DROPPED = {
    "output_dir": "outputs live in outputs/<run> inside the workspace",
    "logging_dir": "logs live in outputs/<run> inside the workspace",
    "aspect_bucket_rounding": "fluxtui keys buckets by their exact target size, so nothing is rounded",
    "aspect_bucket_alignment": "fluxtui aligns sides to Flux's 16 pixels itself",
    "disable_benchmark": "fluxtui makes no base-model benchmark images before training",
    "validation_disable_unconditional": "fluxtui makes no unconditional validation images",
    "seed_for_each_device": "fluxtui derives each process's seed from seed itself",
    "i_know_what_i_am_doing": "a SimpleTuner safety override; fluxtui's validate names every risk instead",
    "disable_bucket_pruning": "fluxtui does not prune small buckets: every image that fits trains",
    "metadata_update_interval": _OWN_LOADER,
    "read_batch_size": _OWN_LOADER,
    "image_processing_batch_size": _OWN_LOADER,
    "aws_max_pool_connections": _OWN_LOADER,
    "torch_num_threads": _OWN_LOADER,
    "max_workers": _OWN_LOADER,
    "dataloader_prefetch": _OWN_LOADER,
    "text_encoder_batch_size": _OWN_LOADER,
    "tracker_image_layout": "fluxtui logs validation images one per prompt",
    "keep_vae_loaded": "fluxtui unloads the VAE once the latents are cached",
    "training_scheduler_timestep_spacing": "a DDPM scheduler option; Flux trains with flow matching",
    "inference_scheduler_timestep_spacing": "a DDPM scheduler option; Flux samples with flow matching",
    "compress_disk_cache": "fluxtui's cache format is its own",
    "override_dataset_config": "fluxtui re-reads project.toml at every run",
}

_UNSUPPORTED = {
    "num_eval_images": _NO_EVAL,
    "eval_steps_interval": _NO_EVAL,
    "eval_dataset_id": _NO_EVAL,
    "evaluation_type": _NO_EVAL,
    "checkpoint_epoch_interval": _BY_STEP,
    "validation_epoch_interval": _BY_STEP,
    "push_to_hub_background": "fluxtui uploads after training, in the foreground",
    "publishing_config": "fluxtui publishes to the Hugging Face hub only (push_to_hub)",
    "webhook_config": "fluxtui reports progress in its event log and TUI, not by webhook",
    "post_checkpoint_script": "fluxtui runs no user scripts",
    "post_upload_script": "fluxtui runs no user scripts",
    "validation_method": "fluxtui validates in the training process only",
    "validation_external_script": "fluxtui validates in the training process only",
    "validation_external_background": "fluxtui validates in the training process only",
    "validation_input": "fluxtui validates from prompts (and kontext references) only",
    "validation_no_cfg_until_timestep": "fluxtui has no CFG schedule in validation",
    "validation_guidance_skip_layers": "fluxtui has no skip-layer guidance",
    "model_card_safe_for_work": _OWN_CARD,
    "model_card_note": _OWN_CARD,
    "modelspec_comment": _OWN_CARD,
    "enable_xformers_memory_efficient_attention": "use attention_mechanism (sdpa or sageattention)",
    "dynamo_backend": "use training.torch_compile",
    "accelerate_extra_args": "fluxtui builds the accelerate launch from [hardware]",
    "use_dora": "fluxtui trains LoRA and LoKr, not DoRA",
    "layer_freeze_strategy": "fluxtui trains adapters only",
    "quantization_config": "use base_model_precision and the text encoder precisions",
    "train_text_encoder": "fluxtui trains the transformer only",
    "noise_offset": "fluxtui trains flow matching without noise offset",
    "input_perturbation": "fluxtui trains flow matching without input perturbation",
    "snr_gamma": "an epsilon-prediction weighting; Flux trains with flow matching",
    "lr_end": "fluxtui's polynomial schedule decays to 0",
    "lr_scale": "fluxtui uses learning_rate as written",
    "optimizer_config": "fluxtui sets each optimizer from its adam_* options",
    "gradient_precision": "fluxtui keeps gradients in the trained weights' dtype",
    "flow_use_beta_schedule": "fluxtui samples training sigmas from the shifted logit-normal schedule",
    "flux_use_beta_schedule": "fluxtui samples training sigmas from the shifted logit-normal schedule",
    "flow_use_uniform_schedule": "fluxtui samples training sigmas from the shifted logit-normal schedule",
    "flow_sigmoid_scale": "fluxtui samples training sigmas from the shifted logit-normal schedule",
    "t5_padding": "fluxtui pads T5 prompts the way its flavour needs",
    "text_cache_ondemand": "fluxtui builds the whole text cache before training",
    "text_cache_disable": "fluxtui builds the whole text cache before training",
    "vae_cache_ondemand": "fluxtui builds the whole latent cache before training",
    "delete_unwanted_images": "fluxtui never deletes your files (it lists skipped images instead)",
    "delete_problematic_images": "fluxtui never deletes your files (it lists skipped images instead)",
    "caption_filter_list": "fluxtui uses captions as written",
    "ignore_final_epochs": "fluxtui stops at max_train_steps or num_train_epochs",
    "allow_tf32": "fluxtui leaves TF32 at PyTorch's setting",
    "disable_tf32": "fluxtui leaves TF32 at PyTorch's setting",
    "validation_torch_compile": "fluxtui compiles for training only (torch_compile)",
}

# Keys that are fine at one value (what fluxtui does anyway) and refused at any other.
_DROPPED_IF = {
    # key: (value that is dropped, reason when dropped, reason when refused)
    "model_family": ("flux", "fluxtui trains Flux only", 'fluxtui trains Flux only (model_family = "flux")'),
    "model_type": (
        "lora",
        "fluxtui trains adapters (lora_type picks LoRA or LyCORIS)",
        "fluxtui trains LoRA/LyCORIS adapters only, not full fine-tunes",
    ),
    "controlnet": (False, "off, as in fluxtui", "fluxtui trains no ControlNet"),
    "fuse_qkv_projections": (False, "off, as in fluxtui", "fluxtui trains unfused attention projections"),
    "validation_prompt_library": (
        False,
        "off, as in fluxtui",
        "fluxtui has no built-in prompt library: use user_prompt_library or [validation.prompts]",
    ),
    "conditioning_multidataset_sampling": (
        "random",
        "fluxtui pairs each image with its one conditioning dataset",
        "fluxtui pairs each image with one conditioning dataset",
    ),
    "ema_cpu_only": (True, 'fluxtui\'s ema_device = "cpu" (its default) does that', "use training.ema_device"),
}

_OTHER_FAMILY_PREFIXES = ("deepfloyd_", "sdxl_", "pixart_", "wan_", "ltx2_", "sana_", "hidream_", "sd3_", "sdnq_")

# fluxtui options with no SimpleTuner counterpart: export leaves them out and says so.
FLUXTUI_ONLY = {
    "model.random_weights",
    "hardware.gpu_ids",
    "hardware.machine_rank",
    "hardware.main_process_ip",
    "hardware.main_process_port",
    "hub.hub_private",
    "training.torch_compile",
    "validation.prompts",  # exported as a user_prompt_library file
    "text_embeds.cache_dir",  # exported as the text_embeds entry of multidatabackend.json
    "lora.lokr_factor",  # exported as a generated lycoris_config.json when no lycoris_config is set
    "memory.enable_model_cpu_offload",
}


def _build() -> dict[str, Name]:
    table: dict[str, Name] = {}
    for opt in OPTIONS:
        if opt.section != "datasets" and opt.kind != "prompts":
            table[opt.key] = Name(opt.key, target=opt.dotted)
    for key in DATASET_DEFAULTS:
        table[key] = Name(key, target=f"datasets.{key}")
    for key, target in _RENAMED.items():
        table[key] = Name(key, target=target)
    for key, why in FOLLOWED.items():
        table[key] = Name(key, dropped=why)
    for key, why in _DROPPED.items():
        table[key] = Name(key, dropped=why)
    for key, why in _UNSUPPORTED.items():
        table[key] = Name(key, unsupported=why)
    for key, (ok, dropped, refused) in _DROPPED_IF.items():
        table[key] = Name(key, dropped=dropped, unsupported=refused, dropped_if=ok)
    return table


CONFIG_KEYS: dict[str, Name] = _build()


def config_name(key: str) -> Name | None:
    """The row of a config.json key (`--` already stripped), or None when unknown."""
    if key in CONFIG_KEYS:
        return CONFIG_KEYS[key]
    if key.startswith(_OTHER_FAMILY_PREFIXES):
        return Name(key, dropped=_OTHER_FAMILY)
    return None


# -- multidatabackend.json ------------------------------------------------------------------

_DATASET_RENAMED = {"disable": "datasets.disabled"}
_DATASET_DROPPED = {
    "metadata_backend": "fluxtui reads image sizes itself and caches them under cache/",
    "skip_file_discovery": "fluxtui scans every dataset at validate and at start",
    "preserve_data_backend_cache": "fluxtui invalidates its caches by content",
    "hash_filenames": "fluxtui names cache files by dataset id and image path",
    "vae_cache_clear_each_epoch": "fluxtui keeps latents for the whole run",
    "scan_for_errors": "fluxtui's validate lists every unreadable image",
    "text_embeds": "fluxtui has one text-embed cache ([text_embeds])",
    "image_embeds": "fluxtui keeps each dataset's latents under its cache_dir_vae",
    "aspect_bucket_rounding": _DROPPED["aspect_bucket_rounding"],
}
_DATASET_UNSUPPORTED = {
    "prepend_instance_prompt": "fluxtui uses one caption_strategy per dataset (instanceprompt or a caption)",
    "minimum_aspect_ratio": "fluxtui trains every aspect ratio it can bucket",
    "maximum_aspect_ratio": "fluxtui trains every aspect ratio it can bucket",
    "caption_filter_list": _UNSUPPORTED["caption_filter_list"],
    "aws_bucket_name": "fluxtui reads local folders and Hugging Face datasets only",
    "aws_endpoint_url": "fluxtui reads local folders and Hugging Face datasets only",
    "aws_region_name": "fluxtui reads local folders and Hugging Face datasets only",
    "aws_access_key_id": "fluxtui reads local folders and Hugging Face datasets only",
    "aws_secret_access_key": "fluxtui reads local folders and Hugging Face datasets only",
    "csv_file": "fluxtui reads local folders and Hugging Face datasets only",
    "csv_caption_column": "fluxtui reads local folders and Hugging Face datasets only",
    "parquet": "fluxtui reads captions from text files, file names, an instance prompt or a dataset column",
}
# Pairing keys of conditioning (kontext reference) datasets, carried under the same names.
CONDITIONING_KEYS = ("dataset_type", "conditioning_data")
DATASET_TYPE_DROPPED = {
    "text_embeds": "fluxtui keeps text embeddings in [text_embeds] cache_dir",
    "image_embeds": "fluxtui keeps each dataset's VAE latents under its cache_dir_vae",
}


def _build_datasets() -> dict[str, Name]:
    table = {o.key: Name(o.key, target=o.dotted) for o in options_in("datasets")}
    for key, target in _DATASET_RENAMED.items():
        table[key] = Name(key, target=target)
    for key, why in _DATASET_DROPPED.items():
        table[key] = Name(key, dropped=why)
    for key, why in _DATASET_UNSUPPORTED.items():
        table[key] = Name(key, unsupported=why)
    table["only_instance_prompt"] = Name(
        "only_instance_prompt",
        target="datasets.caption_strategy",
        unsupported='caption_strategy = "instanceprompt" is fluxtui\'s way',
    )
    return table


DATASET_KEYS: dict[str, Name] = _build_datasets()


# -- "did you mean" -----------------------------------------------------------------------


def explain(key: str) -> str | None:
    """For an unknown key of project.toml: what SimpleTuner's key of that name is here, or None."""
    key = key.removeprefix("--")
    name = config_name(key) or DATASET_KEYS.get(key)
    if name is None:
        return None
    if name.target is not None:
        return f"`{key}` is SimpleTuner's name: in fluxtui it is {name.place()}"
    if key in _FOLLOWED_HERE:
        return f"`{key}` is SimpleTuner's file: {_FOLLOWED_HERE[key]}"
    if name.dropped_if is not None or not name.unsupported:
        return f"`{key}` is a SimpleTuner option fluxtui does not need: {name.dropped}"
    return f"not supported by fluxtui: {name.unsupported}"


# What a followed file's key means when pasted into project.toml.
_FOLLOWED_HERE = {
    "data_backend_config": "fluxtui lists datasets as [[datasets]] tables in project.toml "
    "(`fluxtui import SIMPLETUNER_CONFIG_DIR` converts a multidatabackend.json)",
}


# -- values -------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class ConvertError(ValueError):
    pass


def convert(opt: Option, value: Any) -> Any:
    """SimpleTuner's loose value as the fluxtui option's type; raises ConvertError."""
    kind = opt.kind
    if isinstance(value, str):
        value = value.strip()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConvertError(f"{value!r} is not true or false")
    if kind in ("int", "auto_int"):
        if kind == "auto_int" and value == "auto":
            return value
        return _to_int(value)
    if kind == "float":
        if isinstance(value, str) and value.lower() in ("", "none"):
            return None
        return _to_float(value)
    if kind in ("str", "path"):
        if isinstance(value, bool) or value is None:
            raise ConvertError(f"{value!r} is not a string")
        if isinstance(value, str) and value.lower() == "none" and opt.default is None:
            return None
        return str(value)
    if kind in ("str_list", "int_list", "float_list"):
        items = _split(value)
        if kind == "int_list":
            return [_to_int(v) for v in items]
        if kind == "float_list":
            return [_to_float(v) for v in items]
        return [str(v).strip() for v in items]
    if kind == "routes":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as e:
                raise ConvertError(f"not JSON ({e})") from e
        return value
    return value


def _split(value: Any) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        s = value.strip().strip("[]")
        return [v.strip().strip("\"'") for v in s.split(",") if v.strip()]
    raise ConvertError(f"{value!r} is not a list")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConvertError(f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError) as e:
        raise ConvertError(f"{value!r} is not an integer") from e
    if not math.isfinite(f) or not f.is_integer():
        raise ConvertError(f"{value!r} is not an integer")
    return int(f)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConvertError(f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise ConvertError(f"{value!r} is not a number") from e


# -- config.env ---------------------------------------------------------------------------

# config.env variable -> SimpleTuner option, as its env_file mapping reads them.
ENV_NAMES = {
    "RESUME_CHECKPOINT": "resume_from_checkpoint",
    "DATALOADER_CONFIG": "data_backend_config",
    "ASPECT_BUCKET_ROUNDING": "aspect_bucket_rounding",
    "TRAINING_SEED": "seed",
    "ACCELERATE_CONFIG_PATH": "accelerate_config",
    "ACCELERATE_EXTRA_ARGS": "accelerate_extra_args",
    "USE_EMA": "use_ema",
    "USE_XFORMERS": "enable_xformers_memory_efficient_attention",
    "MINIMUM_RESOLUTION": "minimum_image_size",
    "OUTPUT_DIR": "output_dir",
    "USE_DORA": "use_dora",
    "LORA_TYPE": "lora_type",
    "LYCORIS_CONFIG": "lycoris_config",
    "PUSH_TO_HUB": "push_to_hub",
    "PUSH_TO_HUB_BACKGROUND": "push_to_hub_background",
    "PUSH_CHECKPOINTS": "push_checkpoints_to_hub",
    "MAX_NUM_STEPS": "max_train_steps",
    "NUM_EPOCHS": "num_train_epochs",
    "CHECKPOINTING_STEPS": "checkpoint_step_interval",
    "CHECKPOINT_STEP_INTERVAL": "checkpoint_step_interval",
    "CHECKPOINT_EPOCH_INTERVAL": "checkpoint_epoch_interval",
    "CHECKPOINTING_LIMIT": "checkpoints_total_limit",
    "HUB_MODEL_NAME": "hub_model_id",
    "TRACKER_PROJECT_NAME": "tracker_project_name",
    "TRACKER_RUN_NAME": "tracker_run_name",
    "MODEL_TYPE": "model_type",
    "MODEL_NAME": "pretrained_model_name_or_path",
    "MODEL_FAMILY": "model_family",
    "TRAIN_BATCH_SIZE": "train_batch_size",
    "USE_GRADIENT_CHECKPOINTING": "gradient_checkpointing",
    "CAPTION_DROPOUT_PROBABILITY": "caption_dropout_probability",
    "RESOLUTION_TYPE": "resolution_type",
    "RESOLUTION": "resolution",
    "VALIDATION_SEED": "validation_seed",
    "VALIDATION_STEPS": "validation_step_interval",
    "VALIDATION_STEP_INTERVAL": "validation_step_interval",
    "VALIDATION_EPOCH_INTERVAL": "validation_epoch_interval",
    "VALIDATION_RESOLUTION": "validation_resolution",
    "VALIDATION_GUIDANCE": "validation_guidance",
    "VALIDATION_GUIDANCE_REAL": "validation_guidance_real",
    "VALIDATION_GUIDANCE_RESCALE": "validation_guidance_rescale",
    "VALIDATION_NUM_INFERENCE_STEPS": "validation_num_inference_steps",
    "VALIDATION_PROMPT": "validation_prompt",
    "VALIDATION_NEGATIVE_PROMPT": "validation_negative_prompt",
    "ALLOW_TF32": "allow_tf32",
    "MIXED_PRECISION": "mixed_precision",
    "OPTIMIZER": "optimizer",
    "LEARNING_RATE": "learning_rate",
    "LR_SCHEDULE": "lr_scheduler",
    "LR_WARMUP_STEPS": "lr_warmup_steps",
    "LR_END": "lr_end",
    "BASE_MODEL_PRECISION": "base_model_precision",
    "QUANTIZE_VIA": "quantize_via",
    "TRAINING_NUM_PROCESSES": "num_processes",
    "TRAINING_NUM_MACHINES": "num_machines",
    "TRAINING_DYNAMO_BACKEND": "dynamo_backend",
    "TRAINER_DYNAMO_BACKEND": "dynamo_backend",
    "GRADIENT_ACCUMULATION_STEPS": "gradient_accumulation_steps",
    "FLUX_GUIDANCE_VALUE": "flux_guidance_value",
    "FLUX_LORA_TARGET": "flux_lora_target",
    "METADATA_UPDATE_INTERVAL": "metadata_update_interval",
    "READ_BATCH_SIZE": "read_batch_size",
    "WRITE_BATCH_SIZE": "write_batch_size",
    "TEXT_ENCODER_BATCH_SIZE": "text_encoder_batch_size",
    "TORCH_NUM_THREADS": "torch_num_threads",
    "IMAGE_PROCESSING_BATCH_SIZE": "image_processing_batch_size",
    "DISABLE_BENCHMARK": "disable_benchmark",
}
# Variables of SimpleTuner's train.sh/config.env that are not options.
ENV_DROPPED = {
    "TRAINER_EXTRA_ARGS": "its --key=value flags are read as options",
    "ENV": "selects which SimpleTuner config folder to load; this import read one",
    "SIMPLETUNER_ENVIRONMENT": "selects which SimpleTuner config folder to load; this import read one",
    "DISABLE_UPDATES": "a SimpleTuner install-script switch",
    "CONFIG_BACKEND": "selects SimpleTuner's config format; this import read it",
}
