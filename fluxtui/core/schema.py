"""Every option of project.toml, declared once.

The TUI form, validation, the commented template, docs/options.md and the JSON Schema are
all generated from OPTIONS. Option names follow SimpleTuner's so people can search for them.

An option's `kind` says how a TOML value is checked:
  str, path, int, float, bool, str_list, int_list, float_list, auto_int ("auto" or an int),
  prompts (a table of name = prompt), routes (TREAD routes: a list of tables).
`resume_safe` says whether a running training can absorb a change of it by resuming from a
checkpoint (learning rate, steps...) or whether the change needs a new run (rank, model...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("no_change", "int8-quanto", "int4-quanto", "int2-quanto", "fp8-quanto", "nf4-bnb")

FLAVOURS = {
    "krea": "black-forest-labs/FLUX.1-Krea-dev",
    "dev": "black-forest-labs/FLUX.1-dev",
    "schnell": "black-forest-labs/FLUX.1-schnell",
    "kontext": "black-forest-labs/FLUX.1-Kontext-dev",
    "fluxbooru": "terminusresearch/FluxBooru-v0.3",
    "libreflux": "jimmycarter/LibreFlux-SimpleTuner",
    "tiny-random": "",
}

DATASET_TYPES = ("local", "huggingface")
# SimpleTuner's dataset_type: what a [[datasets]] entry holds. "conditioning": reference images
# that an image dataset names in its conditioning_data (Flux Kontext), paired by file name.
DATASET_ROLES = ("image", "conditioning")
CONDITIONING_TYPES = ("reference_strict", "reference_loose")
# SimpleTuner's other conditioning_type values, refused with the reason.
CONDITIONING_TYPES_REFUSED = {
    "controlnet": "fluxtui trains LoRAs on the Flux transformer, not ControlNets",
    "mask": "loss masks are mask_data_dir on the image dataset itself",
}
# Keys a SimpleTuner [[datasets]] entry may also put in its `huggingface` sub-table.
HUGGINGFACE_KEYS = (
    "dataset_name",
    "split",
    "revision",
    "image_column",
    "caption_column",
    "width_column",
    "height_column",
)

LORA_TARGETS = ("mmdit", "context", "context+ffs", "all", "all+ffs", "tiny", "nano")

OPTIMIZERS = {
    # optimizer name -> the importable package that provides it (None: torch itself)
    "adamw_bf16": "optimi",
    "optimi-lion": "optimi",
    "optimi-stableadamw": "optimi",
    "bnb-adamw8bit": "bitsandbytes",
    "bnb-lion8bit-paged": "bitsandbytes",
    "prodigy": "prodigyopt",
    "torch-adamw": None,
}

LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)

SECTIONS = {
    "project": "What this workspace is called.",
    "model": "Which Flux model to train on and how its weights are held in memory.",
    "lora": "The LoRA adapter that training produces.",
    "training": "The optimisation: batch, steps, optimizer, flow-matching schedule, checkpoints.",
    "validation": "Sample images made during training.",
    "validation.prompts": "A prompt library: name = prompt. The name becomes the image's file name.",
    "memory": "Options that trade speed for VRAM.",
    "hardware": "Processes, GPUs and machines (accelerate).",
    "logging": "Experiment trackers.",
    "hub": "Uploading the finished LoRA to the Hugging Face hub (uses your `hf auth login`).",
    "text_embeds": "The text-embedding cache.",
    "datasets": "One [[datasets]] table per image folder or Hugging Face dataset.",
}

FLOW_SCHEDULE_SHIFT = 3.0  # what an empty flow_schedule_shift means (Flux's usual)
# What an empty flux_guidance_value means per flavour (SimpleTuner trains fluxbooru at 3.5).
FLUX_GUIDANCE_VALUE = {"fluxbooru": 3.5}
FLUX_GUIDANCE_DEFAULT = 1.0


def flux_guidance_value(training: Any, flavour: str) -> float:
    """The constant training guidance: the option, else the flavour's default."""
    value = getattr(training, "flux_guidance_value", None)
    return float(value) if value is not None else FLUX_GUIDANCE_VALUE.get(flavour, FLUX_GUIDANCE_DEFAULT)


# Ranges shared by several options. A seed feeds torch, numpy and random, and derived seeds
# (seed * 1_000_003 + batch) must stay inside torch's 64 bits: 32-bit seeds do.
MAX_SEED = 2**32 - 1
MAX_STEPS = 100_000_000
MAX_IMAGE_SIDE = 8192.0  # a training target: Flux was trained up to ~2 MP
MAX_SOURCE_SIDE = 65536.0  # a source image (photos and scans can be very large)

# Sections whose options a resumed run can absorb unless an option says otherwise.
_RESUME_SAFE_SECTIONS = {"training", "validation", "logging", "hub", "text_embeds", "project"}


@dataclass(frozen=True)
class Option:
    section: str
    key: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    required: bool = False
    example: Any = None  # shown (commented out) in the template when default is None
    resume_safe: bool | None = None  # None: from the section
    extra_values: tuple[str, ...] = field(default=())  # sentinels allowed besides the kind
    dataset_types: tuple[str, ...] | None = None  # [[datasets]] types it applies to (None: all)

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    def required_for(self, dataset_type: str = "local") -> bool:
        """Required in a [[datasets]] table of this type (instance_data_dir for local folders,
        dataset_name for Hugging Face datasets)."""
        return self.required and (self.dataset_types is None or dataset_type in self.dataset_types)

    @property
    def absorbed_by_resume(self) -> bool:
        if self.resume_safe is not None:
            return self.resume_safe
        return self.section in _RESUME_SAFE_SECTIONS


def _o(section: str, key: str, kind: str, default: Any, help: str, **kw: Any) -> Option:
    return Option(section, key, kind, default, help, **kw)


OPTIONS: tuple[Option, ...] = (
    # -- project ---------------------------------------------------------------------------
    _o("project", "name", "str", "my-flux-lora", "Name used for outputs, the model card and trackers."),
    # -- model -----------------------------------------------------------------------------
    _o(
        "model",
        "model_flavour",
        "str",
        "krea",
        "Base model: krea, dev, schnell (fast schedule), kontext, fluxbooru (needs real CFG), "
        "libreflux (needs T5 masking), or tiny-random (toy size, random weights, for tests).",
        choices=tuple(FLAVOURS),
    ),
    _o(
        "model",
        "pretrained_model_name_or_path",
        "str",
        None,
        "Hub id or local folder of the whole pipeline; empty means the flavour's own repo.",
        example="black-forest-labs/FLUX.1-dev",
    ),
    _o(
        "model",
        "pretrained_vae_model_name_or_path",
        "str",
        None,
        "Hub id or local folder for the VAE; empty means the pipeline's own.",
    ),
    _o(
        "model",
        "pretrained_transformer_model_name_or_path",
        "str",
        None,
        "Hub id or local folder for the transformer; empty means the pipeline's own.",
    ),
    _o(
        "model",
        "pretrained_transformer_subfolder",
        "str",
        "transformer",
        'Subfolder of the transformer inside its repo; "none" means the repo root.',
    ),
    _o(
        "model",
        "random_weights",
        "bool",
        False,
        "Build the flavour's real architecture with random weights: measure VRAM and speed "
        "before downloading 24 GB. The LoRA it makes is useless.",
    ),
    _o(
        "model",
        "base_model_precision",
        "str",
        "int8-quanto",
        "How the frozen transformer is held: no_change (bf16), int8/int4/int2/fp8-quanto, "
        "nf4-bnb. int8 ~18G, int4 ~13G, nf4 ~9G at 512 px.",
        choices=PRECISIONS,
    ),
    _o(
        "model",
        "text_encoder_1_precision",
        "str",
        "no_change",
        "Precision of the CLIP text encoder while the text cache is built.",
        choices=PRECISIONS,
    ),
    _o(
        "model",
        "text_encoder_2_precision",
        "str",
        "int8-quanto",
        "Precision of the T5 text encoder while the text cache is built.",
        choices=PRECISIONS,
    ),
    _o(
        "model",
        "quantize_via",
        "str",
        "accelerator",
        "Where quantisation happens: accelerator (fast) or cpu (avoids OOM at start on <= 16G "
        "cards; needs ~50 GB system RAM for full-size models).",
        choices=("accelerator", "cpu"),
    ),
    _o(
        "model",
        "base_model_default_dtype",
        "str",
        "bf16",
        "dtype of the weights that are not quantised.",
        choices=("bf16", "fp32"),
    ),
    _o(
        "model",
        "tokenizer_max_length",
        "int",
        None,
        "T5 sequence length; empty means the flavour's (512 for dev/krea, 256 for schnell).",
        min=16,
        max=512,
        example=512,
    ),
    # -- lora ------------------------------------------------------------------------------
    _o(
        "lora",
        "lora_type",
        "str",
        "standard",
        "standard (peft LoRA) or lycoris (LoKr).",
        choices=("standard", "lycoris"),
    ),
    _o("lora", "lora_rank", "int", 16, "LoRA rank: capacity of the adapter.", min=1, max=1024),
    _o(
        "lora",
        "lora_alpha",
        "float",
        None,
        "LoRA alpha; empty means the same as lora_rank (scale 1.0).",
        min=0.0,
        max=8192.0,
        example=16,
    ),
    _o("lora", "lora_dropout", "float", 0.0, "Dropout on the LoRA path.", min=0.0, max=1.0),
    _o(
        "lora",
        "flux_lora_target",
        "str",
        "all",
        "Layers that get an adapter: mmdit, context, context+ffs, all, all+ffs (largest, "
        "ComfyUI may not load it), tiny, nano.",
        choices=LORA_TARGETS,
    ),
    _o(
        "lora",
        "lora_init_type",
        "str",
        "default",
        "Initialisation of the LoRA weights. loftq cannot be used with a quanto base.",
        choices=("default", "gaussian", "loftq", "olora", "pissa"),
    ),
    _o(
        "lora",
        "lokr_factor",
        "int",
        16,
        "LoKr decomposition factor (lora_type = lycoris only).",
        min=-1,
        max=1024,
    ),
    _o(
        "lora",
        "lycoris_config",
        "path",
        None,
        "lora_type = lycoris: a LyCORIS JSON file as SimpleTuner reads it (algo, linear_dim, "
        "linear_alpha, factor, apply_preset...; relative to the workspace). Without it: LoKr with "
        "lokr_factor on flux_lora_target's layers.",
        example="lycoris_config.json",
    ),
    _o(
        "lora",
        "init_lora",
        "path",
        None,
        "Start from this LoRA file (.safetensors) instead of a fresh adapter.",
        example="outputs/previous/lora/pytorch_lora_weights.safetensors",
    ),
    _o(
        "lora",
        "assistant_lora_path",
        "str",
        None,
        "A frozen LoRA under the trained one while training: hub id, .safetensors file or folder. "
        "Unset: the flavour's (schnell: ostris/FLUX.1-schnell-training-adapter, which undoes the "
        'step distillation; others: none); "" turns it off. Never saved with the LoRA.',
        example="ostris/FLUX.1-schnell-training-adapter",
    ),
    _o(
        "lora",
        "assistant_lora_weight_name",
        "str",
        None,
        "The file inside the assistant_lora_path repo or folder; empty means "
        "pytorch_lora_weights.safetensors, else its only .safetensors file.",
        example="pytorch_lora_weights.safetensors",
    ),
    _o(
        "lora",
        "assistant_lora_strength",
        "float",
        1.0,
        "Scale of the assistant LoRA while training; 0 leaves it out of the training steps.",
        min=0.0,
        max=10.0,
    ),
    _o(
        "lora",
        "assistant_lora_inference_strength",
        "float",
        0.0,
        "Scale of the assistant LoRA in the validation images; 0 (SimpleTuner's default) renders "
        "without it, as the finished LoRA will be used.",
        min=0.0,
        max=10.0,
        resume_safe=True,
    ),
    _o(
        "lora",
        "disable_assistant_lora",
        "bool",
        False,
        "Train without any assistant LoRA, even on schnell.",
    ),
    _o(
        "lora",
        "lora_format",
        "str",
        "diffusers",
        "Also export the final LoRA in ComfyUI's key format (comfyui) besides diffusers'.",
        choices=("diffusers", "comfyui"),
        resume_safe=True,
    ),
    # -- training --------------------------------------------------------------------------
    _o("training", "train_batch_size", "int", 1, "Images per step per process.", min=1, max=256),
    _o(
        "training",
        "gradient_accumulation_steps",
        "int",
        1,
        "Steps whose gradients are summed before one optimizer update.",
        min=1,
        max=1024,
    ),
    _o(
        "training",
        "max_train_steps",
        "int",
        1000,
        "Optimizer updates to run; 0 means use num_train_epochs.",
        min=0,
        max=MAX_STEPS,
    ),
    _o(
        "training",
        "num_train_epochs",
        "int",
        0,
        "Epochs to run when max_train_steps is 0.",
        min=0,
        max=100_000,
    ),
    _o(
        "training",
        "learning_rate",
        "float",
        1e-4,
        "Peak learning rate. Standard LoRA: 1e-5 .. 1e-3.",
        min=0.0,
        max=1.0,
    ),
    _o("training", "lr_scheduler", "str", "constant_with_warmup", "Learning-rate schedule.", choices=LR_SCHEDULERS),
    _o("training", "lr_warmup_steps", "int", 100, "Steps of linear warmup.", min=0, max=MAX_STEPS),
    _o(
        "training",
        "max_grad_norm",
        "float",
        2.0,
        "Gradient clipping threshold (SimpleTuner's default 2.0): each gradient value with "
        'grad_clip_method = "value", the global norm with "norm"; 0 turns clipping off.',
        min=0.0,
        max=10_000.0,
    ),
    _o(
        "training",
        "grad_clip_method",
        "str",
        "value",
        "value: clamp every gradient element to +-max_grad_norm (SimpleTuner's default); "
        "norm: scale all gradients so their global norm is at most max_grad_norm.",
        choices=("value", "norm"),
    ),
    _o("training", "seed", "int", 42, "Random seed for data order, noise and timesteps.", min=0, max=MAX_SEED),
    _o(
        "training",
        "mixed_precision",
        "str",
        "bf16",
        "Autocast precision on GPUs; `no` (fp32) is used on CPUs whatever this says.",
        choices=("bf16", "fp16", "no"),
        resume_safe=False,
    ),
    _o(
        "training",
        "gradient_checkpointing",
        "bool",
        True,
        "Recompute activations in the backward pass: much less VRAM, ~20% slower.",
    ),
    _o(
        "training",
        "gradient_checkpointing_interval",
        "int",
        1,
        "Checkpoint every n-th transformer block (1 = all; higher = faster, more VRAM).",
        min=1,
        max=57,
    ),
    _o(
        "training",
        "optimizer",
        "str",
        "adamw_bf16",
        "Optimizer; each comes from its own package (torch-optimi, bitsandbytes, prodigyopt).",
        choices=tuple(OPTIMIZERS),
        resume_safe=False,
    ),
    _o("training", "adam_beta1", "float", 0.9, "First moment decay.", min=0.0, max=1.0),
    _o("training", "adam_beta2", "float", 0.999, "Second moment decay.", min=0.0, max=1.0),
    _o("training", "adam_weight_decay", "float", 1e-2, "Decoupled weight decay.", min=0.0, max=1.0),
    _o("training", "adam_epsilon", "float", 1e-8, "Numerical epsilon of Adam-style optimizers.", min=0.0, max=1.0),
    _o(
        "training",
        "flow_schedule_shift",
        "float",
        None,
        "Fixed timestep shift s: sigma' = s*sigma / (1 + (s-1)*sigma); empty means 3.0, 0 means "
        "no shift (as in SimpleTuner). Higher favours noisier timesteps (composition), lower "
        "favours detail. Excludes auto shift.",
        min=0.0,
        max=100.0,
        example=3.0,
    ),
    _o(
        "training",
        "flow_schedule_auto_shift",
        "bool",
        False,
        "Shift by resolution instead (1024 px -> ~3.16, 512 px -> ~1.88). Excludes a fixed shift.",
    ),
    _o(
        "training",
        "flux_fast_schedule",
        "bool",
        False,
        "schnell's fast schedule (switched on by itself for schnell).",
    ),
    _o(
        "training",
        "flux_guidance_mode",
        "str",
        "constant",
        "constant: every sample gets flux_guidance_value; random-range: each sample draws its "
        "guidance uniformly from flux_guidance_min .. flux_guidance_max.",
        choices=("constant", "random-range"),
    ),
    _o(
        "training",
        "flux_guidance_value",
        "float",
        None,
        "Guidance given to the transformer in training; empty means the flavour's (3.5 for "
        "fluxbooru, as SimpleTuner, else 1.0). 1.0 keeps the dev distillation, 3.5-4.5 "
        "re-introduces CFG (validation then needs real CFG).",
        min=0.0,
        max=100.0,
        example=1.0,
    ),
    _o(
        "training",
        "flux_guidance_min",
        "float",
        0.0,
        'Lowest guidance drawn with flux_guidance_mode = "random-range".',
        min=0.0,
        max=100.0,
    ),
    _o(
        "training",
        "flux_guidance_max",
        "float",
        4.0,
        'Highest guidance drawn with flux_guidance_mode = "random-range".',
        min=0.0,
        max=100.0,
    ),
    _o(
        "training",
        "caption_dropout_probability",
        "float",
        0.0,
        "Share of samples trained on the empty caption's embedding instead of their own "
        "(SimpleTuner's caption dropout; 0.1 is usual, 0 turns it off).",
        min=0.0,
        max=1.0,
    ),
    _o(
        "training",
        "flux_attention_masked_training",
        "bool",
        False,
        "Mask T5 padding tokens in attention (libreflux needs it).",
        resume_safe=False,
    ),
    _o(
        "training",
        "tread_config",
        "routes",
        None,
        "TREAD token routing: { routes = [{ selection_ratio = 0.5, start_layer_idx = 2, "
        "end_layer_idx = -2 }] }; negative indices count from the last block.",
        example={"routes": [{"selection_ratio": 0.5, "start_layer_idx": 2, "end_layer_idx": -2}]},
    ),
    _o(
        "training",
        "attention_mechanism",
        "str",
        "sdpa",
        "Attention kernel: sdpa or sageattention (needs the sageattention package and CUDA).",
        choices=("sdpa", "sageattention"),
    ),
    _o(
        "training",
        "torch_compile",
        "bool",
        False,
        "torch.compile the transformer: int8-quanto + compile is the fastest on big cards; nf4 cannot be compiled.",
    ),
    _o(
        "training",
        "vae_batch_size",
        "int",
        4,
        "Images the VAE encodes at once while caching latents.",
        min=1,
        max=256,
    ),
    _o(
        "training",
        "checkpointing_steps",
        "int",
        500,
        "Save a resumable checkpoint every n steps; 0 means only at the end.",
        min=0,
        max=MAX_STEPS,
    ),
    _o(
        "training",
        "checkpoints_total_limit",
        "int",
        3,
        "Keep at most this many checkpoints (oldest removed first); 0 keeps all.",
        min=0,
        max=100_000,
    ),
    _o(
        "training",
        "resume_from_checkpoint",
        "str",
        "latest",
        "latest, none, or a path to a checkpoint folder.",
    ),
    _o(
        "training",
        "use_ema",
        "bool",
        False,
        "Keep an exponential moving average of the LoRA weights; the EMA weights are what is "
        "saved (and validated, see ema_validation).",
        resume_safe=False,
    ),
    _o(
        "training",
        "ema_decay",
        "float",
        0.995,
        "EMA smoothing: closer to 1 drifts slower. Young averages use min(decay, (1+n)/(10+n)).",
        min=0.0,
        max=0.9999,
    ),
    _o(
        "training",
        "ema_update_interval",
        "int",
        None,
        "Update the EMA every n optimizer steps; empty means every step.",
        min=1,
        max=MAX_STEPS,
        example=1,
    ),
    _o(
        "training",
        "ema_device",
        "str",
        "cpu",
        "Where the EMA weights live between updates: cpu (no VRAM) or accelerator (faster updates).",
        choices=("cpu", "accelerator"),
    ),
    # -- validation ------------------------------------------------------------------------
    _o(
        "validation",
        "validation_prompt",
        "str",
        "a photo of a cat",
        "Prompt for the validation images (besides [validation.prompts]).",
    ),
    _o(
        "validation",
        "validation_steps",
        "int",
        100,
        "Make validation images every n steps; 0 turns validation off.",
        min=0,
        max=MAX_STEPS,
    ),
    _o(
        "validation",
        "validation_resolution",
        "str_list",
        ["1024x1024"],
        'Sizes to render, as "WxH" strings; each side in pixels.',
        min=16,
        max=4096,
    ),
    _o(
        "validation",
        "validation_guidance",
        "float",
        3.0,
        "Distilled guidance given to the transformer when sampling.",
        min=0.0,
        max=100.0,
    ),
    _o(
        "validation",
        "validation_guidance_real",
        "float",
        1.0,
        "Real classifier-free guidance; > 1 runs a second, negative pass (needed after "
        "training with flux_guidance_value > 1, and for fluxbooru).",
        min=1.0,
        max=100.0,
    ),
    _o(
        "validation",
        "validation_negative_prompt",
        "str",
        "blurry, cropped, ugly",
        "Negative prompt, used only with real CFG.",
    ),
    _o(
        "validation",
        "validation_num_inference_steps",
        "int",
        20,
        "Sampling steps per validation image.",
        min=1,
        max=200,
    ),
    _o("validation", "validation_seed", "int", 42, "Seed of the validation noise.", min=0, max=MAX_SEED),
    _o(
        "validation",
        "validation_guidance_rescale",
        "float",
        0.0,
        "CFG rescale (0 .. 1) of the real-CFG prediction towards the positive one's spread; "
        "needs validation_guidance_real > 1.",
        min=0.0,
        max=1.0,
    ),
    _o(
        "validation",
        "user_prompt_library",
        "path",
        None,
        'A JSON file of named validation prompts, {"anime_<token>": "a prompt"} as in '
        "SimpleTuner (relative to the workspace); rendered besides [validation.prompts].",
        example="prompt_library.json",
    ),
    _o(
        "validation",
        "ema_validation",
        "str",
        "comparison",
        "With use_ema: validate the EMA weights (ema_only), the trained weights (none), or both "
        "(comparison; the EMA images end in -ema).",
        choices=("none", "ema_only", "comparison"),
    ),
    _o(
        "validation",
        "prompts",
        "prompts",
        {},
        "Prompt library: name = prompt.",
        example={"portrait": "a portrait of a woman in a red coat"},
    ),
    # -- memory ----------------------------------------------------------------------------
    _o(
        "memory",
        "offload_during_startup",
        "bool",
        False,
        "SimpleTuner's option, accepted: fluxtui frees the text encoders before the VAE caches latents anyway.",
    ),
    _o("memory", "vae_enable_tiling", "bool", False, "Encode/decode large images in tiles."),
    _o(
        "memory",
        "enable_group_offload",
        "bool",
        False,
        "Stream transformer blocks between CPU and GPU (diffusers group offload).",
    ),
    _o(
        "memory",
        "group_offload_type",
        "str",
        "block_level",
        "Offload granularity.",
        choices=("block_level", "leaf_level"),
    ),
    _o(
        "memory",
        "group_offload_blocks_per_group",
        "int",
        1,
        "Blocks moved together (block_level only).",
        min=1,
        max=57,
    ),
    _o(
        "memory",
        "group_offload_use_stream",
        "bool",
        False,
        "Overlap transfers with compute on a CUDA stream (CUDA only).",
    ),
    _o(
        "memory",
        "group_offload_to_disk_path",
        "path",
        None,
        "Offload to this folder on disk instead of system RAM.",
        example="/tmp/fluxtui-offload",
    ),
    _o(
        "memory",
        "enable_model_cpu_offload",
        "bool",
        False,
        "Move whole models to the CPU when not in use (excludes group offload).",
    ),
    # -- hardware --------------------------------------------------------------------------
    _o(
        "hardware",
        "num_processes",
        "auto_int",
        "auto",
        'Training processes; "auto" means one per visible GPU (1 without GPUs).',
        min=1,
        max=1024,
        resume_safe=False,
    ),
    _o(
        "hardware",
        "gpu_ids",
        "int_list",
        [],
        "GPUs to use (sets CUDA_VISIBLE_DEVICES); empty means all.",
        min=0,
        max=1023,
        resume_safe=False,
    ),
    _o("hardware", "num_machines", "int", 1, "Machines taking part.", min=1, max=1024, resume_safe=False),
    _o(
        "hardware",
        "machine_rank",
        "int",
        0,
        "This machine's rank (0 is the main one).",
        min=0,
        max=1023,
        resume_safe=False,
    ),
    _o(
        "hardware",
        "main_process_ip",
        "str",
        "127.0.0.1",
        "Address of machine 0 (several machines only).",
        resume_safe=False,
    ),
    _o(
        "hardware",
        "main_process_port",
        "int",
        29500,
        "Port of machine 0 (several machines only).",
        min=1,
        max=65535,
        resume_safe=False,
    ),
    _o(
        "hardware",
        "accelerate_config",
        "path",
        None,
        "An accelerate config file (DeepSpeed, FSDP); passed through to accelerate launch.",
        example="accelerate.yaml",
        resume_safe=False,
    ),
    # -- logging ---------------------------------------------------------------------------
    _o(
        "logging",
        "report_to",
        "str",
        "none",
        "Tracker: none, tensorboard (under outputs/<run>/tensorboard) or wandb.",
        choices=("none", "tensorboard", "wandb"),
    ),
    _o("logging", "tracker_project_name", "str", None, "Tracker project; empty means the project name."),
    # -- hub -------------------------------------------------------------------------------
    _o("hub", "push_to_hub", "bool", False, "Upload the final LoRA with a model card."),
    _o("hub", "hub_model_id", "str", None, "Repo to upload to, e.g. you/my-flux-lora.", example="you/my-flux-lora"),
    _o("hub", "hub_private", "bool", True, "Create the repo as private."),
    _o(
        "hub",
        "push_checkpoints_to_hub",
        "bool",
        False,
        "Also upload every checkpoint's LoRA to hub_model_id (under checkpoints/) as it is saved.",
    ),
    # -- text_embeds -----------------------------------------------------------------------
    _o(
        "text_embeds",
        "cache_dir",
        "path",
        "cache/text",
        "Where text embeddings are cached (relative to the workspace).",
        resume_safe=False,
    ),
    _o(
        "text_embeds",
        "write_batch_size",
        "int",
        128,
        "Captions encoded per batch while caching.",
        min=1,
        max=4096,
    ),
    # -- datasets (one table per entry) ----------------------------------------------------
    _o(
        "datasets",
        "id",
        "str",
        None,
        "Unique name of this dataset (used in cache paths).",
        required=True,
        example="my-images",
    ),
    _o(
        "datasets",
        "type",
        "str",
        "local",
        "Where the images are: local (a folder of image files) or huggingface (a Hugging Face "
        "dataset: dataset_name, split, image_column, caption_column).",
        choices=DATASET_TYPES,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "dataset_type",
        "str",
        "image",
        "What the entry holds (SimpleTuner's dataset_type): image (training images) or conditioning "
        '(reference images for model_flavour = "kontext", never trained on by themselves; an image '
        "dataset names this one in conditioning_data and each image pairs with the reference of the "
        "same file name).",
        choices=DATASET_ROLES,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "conditioning_data",
        "str",
        None,
        "On an image dataset: the id of the conditioning dataset whose same-named images are its "
        "references (SimpleTuner's conditioning_data; a list of one id is accepted). Kontext only.",
        example="my-references",
        resume_safe=False,
    ),
    _o(
        "datasets",
        "conditioning_type",
        "str",
        "reference_loose",
        "On a conditioning dataset: reference_loose (SimpleTuner's default: sized and cropped by "
        "this dataset's own resolution and crop options) or reference_strict (each reference is "
        "resized and cropped exactly like its edit image, so the two align).",
        choices=CONDITIONING_TYPES,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "instance_data_dir",
        "path",
        None,
        "Folder of images (relative to the workspace or absolute).",
        required=True,
        example="datasets/my-images",
        dataset_types=("local",),
    ),
    _o(
        "datasets",
        "dataset_name",
        "str",
        None,
        "type = huggingface: a hub dataset id, or a local folder (a `datasets` save_to_disk "
        "folder, or an imagefolder: images + metadata.jsonl/csv). Loaded whole (no streaming), "
        "downloads cached under cache/huggingface.",
        required=True,
        example="username/dataset-name",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "split",
        "str",
        "train",
        "type = huggingface: the split to train on.",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "revision",
        "str",
        None,
        "type = huggingface: a branch, tag or commit of a hub dataset; empty means its main branch.",
        example="main",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "image_column",
        "str",
        "image",
        "type = huggingface: the column holding the images.",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "caption_column",
        "str",
        "caption",
        'type = huggingface: the column holding the captions (caption_strategy = "huggingface").',
        example="text",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "width_column",
        "str",
        None,
        "type = huggingface: a column of image widths, so the scan need not read image headers; "
        "empty: a `width` column when the dataset has one (with `height`), else the headers.",
        example="width",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "height_column",
        "str",
        None,
        "type = huggingface: a column of image heights (with width_column).",
        example="height",
        dataset_types=("huggingface",),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "resolution",
        "float",
        1024,
        "Target size; its meaning depends on resolution_type.",
        min=0.0,
        max=MAX_IMAGE_SIDE,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "resolution_type",
        "str",
        "pixel_area",
        "pixel: shorter edge in px; area: megapixels; pixel_area: edge^2 as megapixels.",
        choices=("pixel", "area", "pixel_area"),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "crop",
        "bool",
        False,
        "Crop to crop_aspect. Off: each image keeps its aspect (resized to the resolution, "
        "sides aligned to 64 px, only the sliver left by the alignment trimmed).",
        resume_safe=False,
    ),
    _o(
        "datasets",
        "crop_aspect",
        "str",
        "square",
        "With crop = true: square (1:1), preserve (the image's aspect), closest or random "
        "(an aspect from crop_aspect_buckets). Without crop every image keeps its aspect.",
        choices=("square", "preserve", "random", "closest"),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "crop_aspect_buckets",
        "float_list",
        [],
        'Aspects (w/h) that crop_aspect = "closest" / "random" crop to, e.g. [0.75, 1.0, 1.5].',
        resume_safe=False,
    ),
    _o(
        "datasets",
        "crop_style",
        "str",
        "center",
        "Where crops are taken.",
        choices=("random", "center", "corner"),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "minimum_image_size",
        "float",
        None,
        "Leave out smaller images (same unit as resolution); they are listed and counted.",
        min=0.0,
        max=MAX_SOURCE_SIDE,
        example=512,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "maximum_image_size",
        "float",
        None,
        "Images larger than this are first downsampled to target_downsample_size.",
        min=0.0,
        max=MAX_SOURCE_SIDE,
        example=2048,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "target_downsample_size",
        "float",
        None,
        "Size that images above maximum_image_size are downsampled to.",
        min=0.0,
        max=MAX_SOURCE_SIDE,
        example=1536,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "caption_strategy",
        "str",
        "textfile",
        "filename (stem, underscores as spaces), textfile (<stem>.txt, one caption per line), "
        "instanceprompt, or huggingface (caption_column; what type = huggingface uses unless set).",
        choices=("filename", "textfile", "instanceprompt", "huggingface"),
        resume_safe=False,
    ),
    _o(
        "datasets",
        "instance_prompt",
        "str",
        None,
        "Caption for every image when caption_strategy = instanceprompt.",
        example="a photo of sks dog",
        resume_safe=False,
    ),
    _o(
        "datasets",
        "repeats",
        "int",
        0,
        "Extra passes over this dataset per epoch (0 = seen once).",
        min=0,
        max=100_000,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "probability",
        "float",
        1.0,
        "Relative chance that a batch comes from this dataset.",
        min=0.0,
        max=1000.0,
        resume_safe=False,
    ),
    _o(
        "datasets",
        "is_regularisation_data",
        "bool",
        False,
        "Train towards the base model's own prediction (adapter off) on these images.",
        resume_safe=False,
    ),
    _o(
        "datasets",
        "mask_data_dir",
        "path",
        None,
        "Folder of masks named like the images; white = full loss weight, black = none.",
        example="datasets/my-images-masks",
        resume_safe=False,
    ),
    _o(
        "datasets",
        "cache_dir_vae",
        "path",
        None,
        "Latent cache folder; empty means cache/vae/<id>.",
        resume_safe=False,
    ),
    _o("datasets", "disabled", "bool", False, "Leave this dataset out.", resume_safe=False),
)

BY_DOTTED: dict[str, Option] = {o.dotted: o for o in OPTIONS}


def options_in(section: str) -> list[Option]:
    return [o for o in OPTIONS if o.section == section]


def table_sections() -> list[str]:
    """Sections written as [section] tables (datasets is an array, prompts a sub-table)."""
    return [s for s in SECTIONS if s not in ("datasets", "validation.prompts")]


def option(dotted: str) -> Option:
    """Look up an option by 'section.key' or 'datasets[i].key'."""
    if dotted.startswith("datasets["):
        dotted = "datasets." + dotted.split("].", 1)[1]
    return BY_DOTTED[dotted]
