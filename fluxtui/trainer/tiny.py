"""Build a complete diffusers Flux pipeline folder with random weights, fully offline.

The folder is loadable by ``FluxPipeline.from_pretrained(path)`` and has the real Flux
layout and module names (``transformer/``, ``vae/``, ``text_encoder/`` CLIP,
``text_encoder_2/`` T5, both tokenizers, the flow-matching scheduler). Weights are random
but deterministic for a seed: two builds with the same ``seed`` and ``size`` give
byte-identical safetensors.

Sizes:

- ``"tiny"``: the smallest shapes that still exercise every code path (whole folder well
  under 2 MB); used by the tests.
- ``"small"``: hidden 256 (4 heads x 64), 2 double + 4 single blocks, text encoders with
  hidden 64; used by the benchmarks.

torch, diffusers and transformers are imported inside the functions only: light code paths
may import this module for its names.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .quiet import no_transformers_progress_bars

__all__ = [
    "BUILD_VERSION",
    "MARKER_NAME",
    "SIZES",
    "build_tiny_flux",
    "ensure_tiny_flux",
    "transformer_config",
]

# Bump when the builder's output changes, so that cached folders from an older builder are
# rebuilt by ``ensure_tiny_flux``.
BUILD_VERSION = 1

# Written last into a finished folder; ``ensure_tiny_flux`` trusts only folders that have it.
MARKER_NAME = ".fluxtui-tiny-complete"

_BUILD_LOCK = threading.Lock()

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512

# Flux.1's scheduler shift settings.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "transformer": {
            "patch_size": 1,
            "in_channels": 64,
            "out_channels": None,
            "num_layers": 1,
            "num_single_layers": 2,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,
            "pooled_projection_dim": 32,
            "guidance_embeds": True,
            "axes_dims_rope": (4, 6, 6),
        },
        "vae_channels": (8, 16, 16, 16),
        "vae_groups": 8,
        "clip": {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64},
        "t5": {"d_model": 32, "layers": 1, "heads": 2, "d_kv": 16, "d_ff": 64},
    },
    "small": {
        "transformer": {
            "patch_size": 1,
            "in_channels": 64,
            "out_channels": None,
            "num_layers": 2,
            "num_single_layers": 4,
            "attention_head_dim": 64,
            "num_attention_heads": 4,
            "joint_attention_dim": 64,
            "pooled_projection_dim": 64,
            "guidance_embeds": True,
            "axes_dims_rope": (8, 28, 28),
        },
        "vae_channels": (32, 32, 64, 64),
        "vae_groups": 8,
        "clip": {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128},
        "t5": {"d_model": 64, "layers": 2, "heads": 4, "d_kv": 16, "d_ff": 128},
    },
}

# Words that get whole-word tokens in both vocabularies; anything else still tokenizes
# character by character (never to unk for lowercase text, digits and punctuation).
_WORDS_TEXT = """
a an the of in on at to and with for from by is are this that it its photo
picture image painting drawing illustration render portrait close up man woman
person people child girl boy face hair eyes hand smile cat dog bird horse fish
tree flower grass sky cloud sun moon water sea mountain river forest city street
house room table chair car road light red green blue yellow black white orange
purple pink brown gray big small old young new bright dark beautiful detailed
style art sks ohwx token trigger background standing sitting wearing holding
"""
_WORDS = tuple(_WORDS_TEXT.split())


def transformer_config(size: str = "tiny") -> dict[str, Any]:
    """The FluxTransformer2DModel keyword arguments used for ``size``."""
    return dict(_size(size)["transformer"])


def _size(size: str) -> dict[str, Any]:
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown tiny Flux size {size!r}; choose from {sorted(SIZES)}") from None


# --------------------------------------------------------------------------- tokenizers


def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: every byte alone and word-final, plus merges for _WORDS.

    Special tokens come last (like CLIP's 49406/49407), so the eos id is the largest id.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    tokens: list[str] = list(alphabet) + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    known = set(tokens)
    for word in _WORDS:
        # Segment the word with the merges so far, then append merges that join the pieces
        # left to right. Appended merges rank below every earlier one, so they never change
        # how an earlier word is segmented: every listed word becomes exactly one token.
        pieces = _bpe([*word[:-1], word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            ranks[pair] = len(merges)
            merges.append(pair)
            if merged not in known:
                known.add(merged)
                tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges by rank (lowest first), as the tokenizers library does."""
    while len(pieces) > 1:
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2 :]]
    return pieces


def _t5_vocab() -> list[tuple[str, float]]:
    """A Unigram vocabulary as (piece, score) pairs, T5-style: <pad>=0, </s>=1, <unk>=2."""
    chars = [chr(c) for c in range(33, 127)]  # printable ASCII, no space
    pieces: list[tuple[str, float]] = [
        ("<pad>", 0.0),
        ("</s>", 0.0),
        ("<unk>", 0.0),
        ("▁", -4.0),
    ]
    pieces += [(c, -10.0) for c in chars]
    pieces += [("▁" + c, -9.0) for c in chars]
    seen = {p for p, _ in pieces}
    for word in _WORDS:
        piece = "▁" + word
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, -5.0))
    return pieces


def _build_tokenizers(dest: Path) -> tuple[Any, Any]:
    from transformers import CLIPTokenizer, T5TokenizerFast

    vocab, merges = _clip_vocab()
    clip_tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)
    t5_tok = T5TokenizerFast(vocab=_t5_vocab(), extra_ids=0, model_max_length=T5_MAX_LENGTH)
    clip_tok.save_pretrained(dest / "tokenizer")
    t5_tok.save_pretrained(dest / "tokenizer_2")
    return clip_tok, t5_tok


# --------------------------------------------------------------------------- models


def _save(model: Any, path: Path) -> None:
    model.save_pretrained(path, safe_serialization=True)


@contextlib.contextmanager
def _float32_on_cpu() -> Iterator[None]:
    import torch

    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu"):
            yield
    finally:
        torch.set_default_dtype(old_dtype)


def _build_models(dest: Path, spec: dict[str, Any], seed: int, clip_tok: Any, t5_tok: Any) -> None:
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .architectures import tiny_architecture

    tcfg = spec["transformer"]
    clip = spec["clip"]
    t5 = spec["t5"]
    if tcfg["pooled_projection_dim"] != clip["hidden"]:
        raise ValueError("pooled_projection_dim must equal the CLIP hidden size")
    if tcfg["joint_attention_dim"] != t5["d_model"]:
        raise ValueError("joint_attention_dim must equal the T5 d_model")
    if sum(tcfg["axes_dims_rope"]) != tcfg["attention_head_dim"]:
        raise ValueError("axes_dims_rope must sum to attention_head_dim")

    # Each component gets its own derived seed so that changing one never shifts another.
    def reseed(offset: int) -> None:
        # The CPU generator only: torch.manual_seed would also reseed every CUDA device.
        torch.default_generator.manual_seed(seed * 1000 + offset)

    # The component configs come from the same table as random_weights' full-size ones;
    # only what the in-memory tokenizers decide is added here.
    arch = tiny_architecture(spec)

    reseed(1)
    transformer = FluxTransformer2DModel(**arch["transformer"])
    _save(transformer, dest / "transformer")
    del transformer

    reseed(2)
    vae = AutoencoderKL(**arch["vae"])
    _save(vae, dest / "vae")
    del vae

    reseed(3)
    clip_config = CLIPTextConfig(
        **{**arch["clip"], "vocab_size": len(clip_tok)},
        # The pooled output is taken at the first eos token: these must match the tokenizer.
        bos_token_id=clip_tok.bos_token_id,
        eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.pad_token_id,
    )
    _save(CLIPTextModel(clip_config), dest / "text_encoder")

    reseed(4)
    t5_config = T5Config(
        **{**arch["t5"], "vocab_size": len(t5_tok)},
        pad_token_id=t5_tok.pad_token_id,
        eos_token_id=t5_tok.eos_token_id,
        decoder_start_token_id=t5_tok.pad_token_id,
    )
    _save(T5EncoderModel(t5_config), dest / "text_encoder_2")


def _write_scheduler(dest: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG).save_pretrained(dest / "scheduler")


def _write_model_index(dest: Path) -> None:
    import diffusers

    index = {
        "_class_name": "FluxPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (dest / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- public API


def build_tiny_flux(dest: Path, *, seed: int = 0, size: str = "tiny") -> Path:
    """Write a random-weight Flux pipeline folder into ``dest`` (created; may exist empty).

    Deterministic for (seed, size); the caller's global torch RNG state is left untouched.
    Returns ``dest``.
    """
    import torch

    spec = _size(size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # Weight init draws from torch's global CPU generator: one build at a time per process,
    # on the CPU in float32 whatever defaults the caller set, with its RNG state restored.
    with (
        _BUILD_LOCK,
        torch.random.fork_rng(devices=[]),
        _float32_on_cpu(),
        no_transformers_progress_bars(),
    ):
        clip_tok, t5_tok = _build_tokenizers(dest)
        _build_models(dest, spec, seed, clip_tok, t5_tok)
    _write_scheduler(dest)
    _write_model_index(dest)
    return dest


def _marker_text(seed: int, size: str) -> str:
    return json.dumps({"version": BUILD_VERSION, "seed": seed, "size": size}, sort_keys=True)


def _is_complete(path: Path, seed: int, size: str) -> bool:
    try:
        return (path / MARKER_NAME).read_text() == _marker_text(seed, size)
    except OSError:
        return False


def ensure_tiny_flux(cache_root: Path, seed: int = 0, size: str = "tiny") -> Path:
    """Return ``cache_root/f"{size}-{seed}"``, building it first unless a complete copy exists.

    Safe against concurrent callers: each builds into its own temp folder next to the
    target, writes the marker file last, then renames; a loser of the race removes its copy.
    """
    _size(size)
    cache_root = Path(cache_root)
    final = cache_root / f"{size}-{seed}"
    if _is_complete(final, seed, size):
        return final

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache_root))
    try:
        build_tiny_flux(tmp, seed=seed, size=size)
        (tmp / MARKER_NAME).write_text(_marker_text(seed, size))
        for _ in range(3):
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if _is_complete(final, seed, size):
                    return final  # another process won the race; ours is removed below
                # A stale or foreign folder (older builder, interrupted copy): move it aside.
                trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.stale-", dir=cache_root))
                try:
                    os.rename(final, trash / "old")
                except OSError:
                    pass
                shutil.rmtree(trash, ignore_errors=True)
        raise RuntimeError(f"could not move the tiny Flux build into {final}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
