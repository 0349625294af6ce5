"""Load the Flux pipeline parts the trainer needs: from the hub, a local folder, or built with
random weights; then quantise them per the project's precisions.

Where things come from (``resolve_sources``, pure and offline):

- ``tiny-random``: the toy pipeline that ``trainer.tiny`` builds into ``cache/models/``.
- any other flavour: ``pretrained_model_name_or_path`` or the flavour's hub repo. The VAE and
  the transformer can come from elsewhere (``pretrained_vae_model_name_or_path``,
  ``pretrained_transformer_model_name_or_path``); ``pretrained_transformer_subfolder`` says
  where the transformer sits inside its repo (``none`` = the root).
- ``random_weights = true``: the flavour's real full-size architecture with random weights and
  nothing downloaded (to measure VRAM and speed before a 24 GB download), built on the CPU.

The trainer loads one stage's parts at a time (``prepare_models`` reads configs, tokenizers and
the scheduler; ``load_text_encoders``, ``load_vae``, ``load_transformer`` each place one part;
``free_*`` drop them), so the accelerator never holds more than one stage needs.

Hub repos are fetched with one ``snapshot_download`` per repo, limited to the files the
trainer uses, so that hub failures (gated, no login, offline, not found) arrive as
huggingface_hub's own exception classes and become a ``ModelLoadError`` that names the option
and the fix. Components are then read from local folders only.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fluxtui.core.schema import FLAVOURS

from . import architectures
from .quantise import TRANSFORMER_EXCLUDE, quantise
from .quiet import no_transformers_progress_bars

__all__ = [
    "ModelLoadError",
    "Models",
    "Source",
    "Sources",
    "encode_prompts",
    "free_text_encoders",
    "free_vae",
    "load_models",
    "load_text_encoders",
    "load_transformer",
    "load_vae",
    "prepare_models",
    "resident",
    "resolve_sources",
]

# T5 sequence length per flavour when tokenizer_max_length is not set.
T5_MAX_LENGTH = {
    "krea": 512,
    "dev": 512,
    "kontext": 512,
    "fluxbooru": 512,
    "libreflux": 512,
    "schnell": 256,
    "tiny-random": 32,
}

# The tiny model is the *base* model: it must not change with the training seed, or every
# seed would get its own latent and text caches.
TINY_SEED = 0


# --------------------------------------------------------------------------- errors and results


class ModelLoadError(Exception):
    """A model could not be loaded; ``message`` says what, which option, and the fix."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key


@dataclass
class Models:
    transformer: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    scheduler: Any
    flavour: str
    source: str
    weight_dtype: torch.dtype
    t5_max_length: int
    has_guidance: bool
    precisions: dict[str, str] = field(default_factory=dict)  # component -> precision used
    sources: Any = None  # Sources, local after prepare_models
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> its config


# --------------------------------------------------------------------------- source resolution


@dataclass(frozen=True)
class Source:
    repo: str  # hub id, or an absolute local folder
    subfolder: str | None
    local: bool
    key: str  # the option a failure is blamed on

    def describe(self) -> str:
        where = f"{self.repo}/{self.subfolder}" if self.subfolder else self.repo
        return where if self.local else f"hub:{where}"


@dataclass(frozen=True)
class Sources:
    pipeline: Source  # text encoders, tokenizers, scheduler (and the rest unless overridden)
    transformer: Source
    vae: Source
    random_weights: bool
    tiny: bool


def _looks_like_path(value: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with path syntax is a folder.
    return (
        value.startswith(("/", ".", "~"))
        or "\\" in value
        or value.count("/") > 1
        or (len(value) > 1 and value[1] == ":")
    )


def _source(project: Any, value: str, key: str, subfolder: str | None) -> Source:
    path = project.resolve(value)
    if path.is_dir():
        return Source(str(path.resolve()), subfolder, True, key)
    if _looks_like_path(value) or path.exists():
        raise ModelLoadError(
            f"`{key}` = {value!r}: the folder {path} does not exist. Fix the path (relative paths "
            "are relative to the workspace) or give a hub id such as black-forest-labs/FLUX.1-dev.",
            key,
        )
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(value)
    except ValueError:  # HFValidationError
        raise ModelLoadError(
            f"`{key}` = {value!r} is neither an existing folder nor a valid hub id (owner/name).", key
        ) from None
    return Source(value, subfolder, False, key)


def _has_config(src: Source, sub: str | None) -> bool:
    folder = Path(src.repo) / sub if sub else Path(src.repo)
    return (folder / "config.json").is_file()


def resolve_sources(project: Any, *, tiny_root: Path | None = None) -> Sources:
    """Where each component comes from, without touching the network or building anything.

    ``tiny_root`` is the folder tiny-random lives in (default ``<workspace>/cache/models``).
    """
    m = project.model
    flavour = m.model_flavour
    if flavour not in FLAVOURS:
        raise ModelLoadError(
            f"`model.model_flavour` = {flavour!r} is not a known flavour; choose from {', '.join(FLAVOURS)}.",
            "model.model_flavour",
        )
    explicit = getattr(project, "explicit", set())
    sub_value = m.pretrained_transformer_subfolder
    sub = None if sub_value in (None, "", "none") else sub_value
    sub_explicit = "model.pretrained_transformer_subfolder" in explicit

    tiny = flavour == "tiny-random" and not m.pretrained_model_name_or_path
    if tiny:
        root = Path(tiny_root) if tiny_root else project.workspace / "cache" / "models"
        pipeline = Source(str(root / f"tiny-{TINY_SEED}"), None, True, "model.model_flavour")
    elif m.pretrained_model_name_or_path:
        pipeline = _source(project, m.pretrained_model_name_or_path, "model.pretrained_model_name_or_path", None)
    else:
        pipeline = Source(FLAVOURS[flavour], None, False, "model.model_flavour")

    if m.pretrained_transformer_model_name_or_path:
        key = "model.pretrained_transformer_model_name_or_path"
        transformer = _source(project, m.pretrained_transformer_model_name_or_path, key, sub)
        # A local folder that is a bare transformer (config.json at its root) needs no subfolder
        # unless the user named one.
        if (
            transformer.local
            and not sub_explicit
            and not _has_config(transformer, sub)
            and _has_config(transformer, None)
        ):
            transformer = Source(transformer.repo, None, True, key)
    else:
        key = "model.pretrained_transformer_subfolder" if sub_explicit else pipeline.key
        transformer = Source(pipeline.repo, sub, pipeline.local, key)

    if m.pretrained_vae_model_name_or_path:
        key = "model.pretrained_vae_model_name_or_path"
        vae = _source(project, m.pretrained_vae_model_name_or_path, key, None)
        if vae.local and not _has_config(vae, None) and _has_config(vae, "vae"):
            vae = Source(vae.repo, "vae", True, key)
    else:
        vae = Source(pipeline.repo, "vae", pipeline.local, pipeline.key)

    random_weights = bool(m.random_weights) and not tiny
    return Sources(pipeline, transformer, vae, random_weights, tiny)


# --------------------------------------------------------------------------- hub access


def _hub_error(exc: BaseException, src: Source) -> ModelLoadError:
    """Turn a huggingface_hub failure into a message that names the option and the fix."""
    from huggingface_hub import errors as hf

    repo, key = src.repo, src.key
    page = f"https://huggingface.co/{repo}"
    if isinstance(exc, hf.GatedRepoError):
        if _logged_in():
            fix = f"you are logged in but not granted access yet: accept the licence on {page}"
        else:
            fix = f"log in with `hf auth login`, and accept the licence on {page} with that account"
        msg = f"`{key}` = {repo!r} is a gated model and the hub refused the download: {fix}."
    elif isinstance(exc, hf.RepositoryNotFoundError):
        msg = (
            f"`{key}` = {repo!r}: the hub has no such repository, or it is private and you are "
            "not logged in. Check the id (owner/name), or run `hf auth login` if it is private."
        )
    elif isinstance(exc, hf.RevisionNotFoundError):
        msg = f"`{key}` = {repo!r}: the revision asked for does not exist on the hub."
    elif isinstance(exc, hf.LocalEntryNotFoundError):
        offline = _offline()
        why = (
            "HF_HUB_OFFLINE is set, so the hub is not asked"
            if offline
            else "the hub could not be reached (no network?)"
        )
        msg = (
            f"`{key}` = {repo!r}: {why}, and the model is not in the local hub cache. "
            + (
                "Unset HF_HUB_OFFLINE (or set it to 0) to download it, "
                if offline
                else "Connect this machine to the internet to download it once, "
            )
            + "or point the option at a local folder that holds the model."
        )
    elif isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            msg = (
                f"`{key}` = {repo!r}: the hub refused access (HTTP {status}). Log in with "
                f"`hf auth login`, and accept the licence on {page} if the model is gated."
            )
        else:
            msg = f"`{key}` = {repo!r}: the hub answered with an error: {_first_line(exc)}"
    elif isinstance(exc, hf.HFValidationError):
        msg = f"`{key}` = {repo!r} is neither an existing folder nor a valid hub id (owner/name)."
    else:
        msg = f"`{key}` = {repo!r}: download failed: {_first_line(exc)}"
    return ModelLoadError(msg, key)


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE) or env


def _logged_in() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _hub_patterns(sources: Sources) -> dict[str, tuple[Source, list[str]]]:
    """Files to fetch per hub repo: only what the trainer loads (never the 23 GB single files)."""
    wanted: dict[str, tuple[Source, list[str]]] = {}

    def add(src: Source, patterns: list[str]) -> None:
        if src.local:
            return
        entry = wanted.setdefault(src.repo, (src, []))
        entry[1].extend(p for p in patterns if p not in entry[1])

    def folder(sub: str | None) -> list[str]:
        if sub:
            return [f"{sub}/*.json", f"{sub}/*.safetensors", f"{sub}/*.txt", f"{sub}/*.model"]
        return ["config.json", "*.safetensors.index.json", "diffusion_pytorch_model*.safetensors"]

    add(
        sources.pipeline,
        ["model_index.json"]
        + [
            p
            for sub in ("scheduler", "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
            for p in folder(sub)
        ],
    )
    add(sources.transformer, folder(sources.transformer.subfolder))
    add(sources.vae, folder(sources.vae.subfolder))
    return wanted


def _download(sources: Sources, log: Callable[[str], None]) -> Sources:
    """Fetch hub repos into the hub cache; return the same sources pointing at local folders."""
    from huggingface_hub import snapshot_download

    local: dict[str, str] = {}
    for repo, (src, patterns) in _hub_patterns(sources).items():
        log(f"fetching {repo} from the hub (or the local hub cache)")
        try:
            local[repo] = snapshot_download(repo, allow_patterns=patterns)
        except Exception as exc:  # huggingface_hub raises many classes; each gets a message
            raise _hub_error(exc, src) from exc

    def swap(src: Source) -> Source:
        return Source(local[src.repo], src.subfolder, True, src.key) if not src.local else src

    return Sources(
        swap(sources.pipeline), swap(sources.transformer), swap(sources.vae), sources.random_weights, sources.tiny
    )


# --------------------------------------------------------------------------- loading


def _weight_dtype(project: Any, device: torch.device) -> torch.dtype:
    if device.type == "cpu" or project.model.base_model_default_dtype == "fp32":
        return torch.float32
    return torch.bfloat16


def _check_folder(src: Source, what: str) -> Path:
    folder = Path(src.repo) / src.subfolder if src.subfolder else Path(src.repo)
    if not (folder / "config.json").is_file():
        hint = ""
        if what == "transformer":
            hint = (
                " Set `model.pretrained_transformer_subfolder` to the folder that holds the "
                'transformer\'s config.json ("none" for the root).'
            )
        raise ModelLoadError(f"no {what} found: {folder} has no config.json (option `{src.key}`).{hint}", src.key)
    return folder


def _from_pretrained(load: Callable[[], Any], src: Source, what: str) -> Any:
    try:
        return load()
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not load the {what} from {src.describe()} (option `{src.key}`): {_first_line(exc)}", src.key
        ) from exc


def _load_transformer(src: Source, dtype: torch.dtype) -> Any:
    from diffusers import FluxTransformer2DModel

    folder = _check_folder(src, "transformer")
    return _from_pretrained(
        lambda: FluxTransformer2DModel.from_pretrained(folder, torch_dtype=dtype), src, "transformer"
    )


def _load_vae(src: Source, dtype: torch.dtype) -> Any:
    from diffusers import AutoencoderKL

    folder = _check_folder(src, "VAE")
    return _from_pretrained(lambda: AutoencoderKL.from_pretrained(folder, torch_dtype=dtype), src, "VAE")


_TEXT_LOADERS: dict[str, Callable[[Path, Any], Any]] = {
    "text_encoder": lambda p, dtype: __import__("transformers").CLIPTextModel.from_pretrained(p, dtype=dtype),
    "text_encoder_2": lambda p, dtype: __import__("transformers").T5EncoderModel.from_pretrained(p, dtype=dtype),
}


def _pipeline_folder(src: Source, name: str) -> Path:
    root = Path(src.repo)
    folder = root / name
    if not folder.is_dir():
        raise ModelLoadError(
            f"{root} has no {name}/ folder: `{src.key}` must name a whole Flux pipeline "
            "(model_index.json, transformer/, vae/, text_encoder/, text_encoder_2/, tokenizers, scheduler).",
            src.key,
        )
    return folder


def _load_light_parts(src: Source) -> dict[str, Any]:
    """Tokenizers and scheduler: small, needed by every stage."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTokenizer, T5TokenizerFast

    loaders: list[tuple[str, Callable[[Path], Any]]] = [
        ("tokenizer", lambda p: CLIPTokenizer.from_pretrained(p)),
        ("tokenizer_2", lambda p: T5TokenizerFast.from_pretrained(p)),
        ("scheduler", lambda p: FlowMatchEulerDiscreteScheduler.from_pretrained(p)),
    ]
    for name in ("text_encoder", "text_encoder_2"):
        _pipeline_folder(src, name)  # a pipeline without them fails now, not at the text cache
    parts = {}
    for name, load in loaders:
        folder = _pipeline_folder(src, name)
        parts[name] = _from_pretrained(lambda load=load, folder=folder: load(folder), src, name)
    return parts


def _load_text_part(src: Source, name: str, dtype: torch.dtype) -> Any:
    folder = _pipeline_folder(src, name)
    return _from_pretrained(lambda: _TEXT_LOADERS[name](folder, dtype), src, name)


def _place_and_quantise(
    module: Any, precision: str, *, device: torch.device, via: str, name: str, log: Callable[[str], None]
) -> Any:
    """Move ``module`` to ``device``, quantised per ``precision``.

    via=cpu: quantise the whole module on the CPU, then move the quantised module.
    via=accelerator: move it block by block, each block quantised on the device as it arrives,
    so the device never holds the full-precision model (see quantise.quantise).
    """
    module.requires_grad_(False)
    exclude = TRANSFORMER_EXCLUDE if name == "transformer" else ()
    if precision == "no_change":
        return module.to(device)
    if via == "cpu" or device.type == "cpu":
        log(f"quantising the {name} to {precision} on the CPU")
        module.to("cpu")
        quantise(module, precision, exclude=exclude)
        return module.to(device)
    log(f"quantising the {name} to {precision} on {device}, block by block")
    quantise(module, precision, exclude=exclude, device=device)
    return module


def load_models(project: Any, *, device: torch.device, log: Callable[[str], None] = print) -> Models:
    """Load (or build) every component, quantised per the project, on ``device``.

    The trainer itself loads them one stage at a time (``prepare_models``, then
    ``load_text_encoders`` / ``load_vae`` / ``load_transformer``, freeing in between); this
    loads all of them at once for callers that want the whole pipeline.
    The transformer is frozen (requires_grad False); ``lora.add_lora`` adds the trainable part.
    Raises ``ModelLoadError`` for every failure a user can fix.
    """
    m = prepare_models(project, device=device, log=log)
    load_text_encoders(m, project, device=device, log=log)
    load_vae(m, project, device=device, log=log)
    load_transformer(m, project, device=device, log=log)
    return m


def prepare_models(project: Any, *, device: torch.device, log: Callable[[str], None] = print) -> Models:
    """Everything but the big components: sources (downloaded when on the hub), tokenizers,
    scheduler, and each component's config (the cache identities are made from them), so that
    warm caches need neither the text encoders nor the VAE. Nothing is placed on ``device``."""
    from .tiny import ensure_tiny_flux

    device = torch.device(device)
    dtype = _weight_dtype(project, device)
    tiny_root = project.workspace / "cache" / "models"
    sources = resolve_sources(project, tiny_root=tiny_root)
    m = project.model
    flavour = m.model_flavour
    with no_transformers_progress_bars():
        if sources.tiny:
            log("building the tiny-random Flux model (toy size, random weights: learns shapes and colours only)")
            ensure_tiny_flux(tiny_root, seed=TINY_SEED)
        if sources.random_weights:
            log(f"building {flavour}'s full-size architecture with RANDOM weights (nothing is downloaded)")
            tiny_dir = Path(ensure_tiny_flux(tiny_root, seed=TINY_SEED))
            light = _load_light_parts(Source(str(tiny_dir), None, True, "model.model_flavour"))
            configs = architectures.configs_for(architectures.architecture(flavour), light["tokenizer"])
            source = f"random:{flavour}"
        else:
            sources = _download(sources, log)
            light = _load_light_parts(sources.pipeline)
            configs = {
                "transformer": _read_config(sources.transformer, "transformer"),
                "vae": _read_config(sources.vae, "VAE"),
                "text_encoder": _read_config(_sub(sources.pipeline, "text_encoder"), "text_encoder"),
                "text_encoder_2": _read_config(_sub(sources.pipeline, "text_encoder_2"), "text_encoder_2"),
            }
            source = m.pretrained_model_name_or_path or (sources.pipeline.repo if sources.tiny else FLAVOURS[flavour])
    t5_max = m.tokenizer_max_length or T5_MAX_LENGTH.get(flavour, 512)
    return Models(
        transformer=None,
        vae=None,
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=light["tokenizer"],
        tokenizer_2=light["tokenizer_2"],
        scheduler=light["scheduler"],
        flavour=flavour,
        source=str(source),
        weight_dtype=dtype,
        t5_max_length=int(t5_max),
        has_guidance=bool(configs["transformer"].get("guidance_embeds", False)),
        precisions={
            "transformer": m.base_model_precision,
            "text_encoder": m.text_encoder_1_precision,
            "text_encoder_2": m.text_encoder_2_precision,
            "vae": "no_change",
        },
        sources=sources,
        configs=configs,
    )


def load_text_encoders(m: Models, project: Any, *, device: torch.device, log: Callable[[str], None] = print) -> None:
    """CLIP and T5 onto ``device``, quantised per text_encoder_{1,2}_precision."""
    _load_parts(m, project, ("text_encoder", "text_encoder_2"), device=torch.device(device), log=log)


def load_vae(m: Models, project: Any, *, device: torch.device, log: Callable[[str], None] = print) -> None:
    _load_parts(m, project, ("vae",), device=torch.device(device), log=log)


def load_transformer(m: Models, project: Any, *, device: torch.device, log: Callable[[str], None] = print) -> None:
    """The transformer onto ``device``, quantised per base_model_precision (block by block on
    the accelerator), frozen."""
    _load_parts(m, project, ("transformer",), device=torch.device(device), log=log)


def resident(m: Models) -> list[str]:
    """The big components loaded right now (what a `stage` event names as resident)."""
    return [n for n in ("text_encoder", "text_encoder_2", "vae", "transformer") if getattr(m, n) is not None]


def _load_parts(
    m: Models, project: Any, names: tuple[str, ...], *, device: torch.device, log: Callable[[str], None]
) -> None:
    via = project.model.quantize_via
    with no_transformers_progress_bars():
        for name in names:
            if getattr(m, name) is not None:
                continue
            src = m.sources
            if src.random_weights:
                # Built on the CPU and then placed like loaded weights (block by block, quantised
                # as they arrive): the accelerator never holds a full-precision transformer.
                module = architectures.build_random_part(m.configs, name, torch.device("cpu"), m.weight_dtype)
            elif name == "transformer":
                log(f"loading the transformer from {src.transformer.describe()}")
                module = _load_transformer(src.transformer, m.weight_dtype)
            elif name == "vae":
                log(f"loading the VAE from {src.vae.describe()}")
                module = _load_vae(src.vae, m.weight_dtype)
            else:
                log(f"loading {name} from {src.pipeline.describe()}")
                module = _load_text_part(src.pipeline, name, m.weight_dtype)
            module = _place_and_quantise(module, m.precisions[name], device=device, via=via, name=name, log=log)
            setattr(m, name, module)
            gc.collect()
    if "transformer" in names:
        m.has_guidance = bool(m.transformer.config.guidance_embeds)


def _sub(src: Source, name: str) -> Source:
    return Source(src.repo, name, src.local, src.key)


def _read_config(src: Source, what: str) -> dict[str, Any]:
    """A component's config.json, without the fields that only say which library wrote it."""
    import json

    folder = _check_folder(src, what)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not read the {what}'s config.json in {folder} (option `{src.key}`): {_first_line(exc)}", src.key
        ) from exc
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _VERSION_KEYS}


_VERSION_KEYS = {"transformers_version", "diffusers_version", "torch_dtype", "dtype", "architectures"}


# --------------------------------------------------------------------------- text encoding


def _module_device(module: Any) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def encode_prompts(
    models: Models, prompts: list[str], *, device: torch.device, max_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T5 prompt embeds [B, L, D], pooled CLIP [B, D], T5 attention mask [B, L]) on ``device``.

    Encoders run wherever they are (CPU when offloaded); embeds come back in weight_dtype.
    """
    if models.text_encoder is None or models.text_encoder_2 is None:
        raise RuntimeError("the text encoders were freed; encode prompts before free_text_encoders()")
    length = max_length or models.t5_max_length
    clip_ids = models.tokenizer(
        prompts,
        padding="max_length",
        max_length=models.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    pooled = models.text_encoder(clip_ids.to(_module_device(models.text_encoder)), output_hidden_states=False)
    pooled = pooled.pooler_output

    t5 = models.tokenizer_2(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    t5_device = _module_device(models.text_encoder_2)
    embeds = models.text_encoder_2(t5.input_ids.to(t5_device), output_hidden_states=False)[0]
    dtype = models.weight_dtype
    return (
        embeds.to(device=device, dtype=dtype),
        pooled.to(device=device, dtype=dtype),
        t5.attention_mask.to(device),
    )


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def free_text_encoders(models: Models) -> None:
    """Drop both text encoders (tokenizers stay: they are tiny)."""
    models.text_encoder = None
    models.text_encoder_2 = None
    _release()


def free_vae(models: Models) -> None:
    models.vae = None
    _release()
