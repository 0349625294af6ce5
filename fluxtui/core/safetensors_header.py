"""Read a .safetensors file's header (tensor names, shapes, metadata) without torch.

The format: 8 bytes little-endian header length, then that many bytes of JSON. Reading only
the header lets `fluxtui validate` check a LoRA file in microseconds, whatever its size.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class HeaderError(ValueError):
    """The file is not a readable safetensors file."""


def read_header(path: Path) -> dict:
    """{tensor name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise HeaderError("too short to be a safetensors file")
            (length,) = struct.unpack("<Q", raw)
            if not 0 < length <= MAX_HEADER:
                raise HeaderError("not a safetensors file (bad header length)")
            body = f.read(length)
    except OSError as exc:
        raise HeaderError(f"cannot be read: {exc.strerror or exc}") from exc
    if len(body) != length:
        raise HeaderError("truncated (the header is cut short)")
    try:
        header = json.loads(body)
    except ValueError as exc:
        raise HeaderError("not a safetensors file (the header is not JSON)") from exc
    if not isinstance(header, dict):
        raise HeaderError("not a safetensors file (the header is not a table)")
    return header


def lora_layout(header: dict) -> tuple[str, int | None]:
    """(format, rank) of a LoRA file's tensors: "diffusers" (lora_A/lora_B, peft and
    diffusers), "kohya" (lora_down/lora_up, ComfyUI), "lokr" (LyCORIS), or "unknown"."""
    names = [k for k in header if k != "__metadata__"]

    def rank_of(marker: str) -> int | None:
        # the smallest: a kohya file's fused qkv layers stack the parts' ranks (3r, 4r)
        ranks = []
        for k in names:
            shape = header[k].get("shape") if marker in k and isinstance(header[k], dict) else None
            if isinstance(shape, list) and shape:
                ranks.append(int(shape[0]))
        return min(ranks) if ranks else None

    if any(".lora_A." in k for k in names):
        return "diffusers", rank_of(".lora_A.")
    if any(".lora_down." in k for k in names):
        return "kohya", rank_of(".lora_down.")
    if any(".lokr_w1" in k or ".lokr_w2" in k for k in names):
        return "lokr", None
    return "unknown", None
