"""The latent cache and the text-embedding cache, on disk and reused by later runs.

Latents: one safetensors file per image and resolution under cache/vae/<dataset-id>/ (or the
dataset's cache_dir_vae). Its metadata records what it was made from (file size and mtime,
the crop, the VAE, the mask file); a file whose record does not match is encoded again.
Text: one file per caption under [text_embeds] cache_dir, named by a hash of the caption,
the text encoders' identity and the T5 length. Both are written to a temp file and renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fluxtui.core.flux_arch import T5_ENCODE_BATCH

from . import data

CACHE_FORMAT = "1"


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _metadata(path: Path) -> dict[str, str] | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception:  # missing, truncated, not safetensors: all mean "not cached"
        return None


# -- latents ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One training image as the loop sees it."""

    dataset: int  # index into the run's active datasets
    image: Path
    captions: tuple[str, ...]
    bucket: tuple[int, int]  # its exact target size (w, h)
    latent: Path  # its cache file
    record: str  # what the cache file must say it was made from
    geometry: data.Geometry
    shrink_to: tuple[int, int] | None
    mask: Path | None
    regularisation: bool
    row: int | None = None  # type = "huggingface": the row of `rows` the image comes from
    rows: Any = None  # its core.hf_datasets.Rows
    # Kontext: the reference image, encoded into the same cache file, and how it is cut
    reference: Path | None = None
    reference_geometry: data.Geometry | None = None
    reference_shrink: tuple[int, int] | None = None

    def source(self) -> Path | bytes:
        """What to decode: the image file, or a dataset row's bytes (or the file it names)."""
        return self.image if self.row is None else self.rows.image(self.row)


def vae_identity(models: Any) -> str:
    """What the latents are made with, from the VAE's config: known before (and without) loading it."""
    cfg = json.dumps(models.configs.get("vae", {}), sort_keys=True, default=str)
    return data.short_hash(models.source, cfg, str(models.weight_dtype))


def make_entry(
    dataset_index: int,
    ds: Any,
    info: Any,
    *,
    folder: Path,
    vae_id: str,
    seed_key: str = "",
    rows: Any = None,
    reference_ds: Any = None,
) -> Entry:
    """Where image `info` (a core.datasets.ImageInfo) is cached and what the file must record.
    A Hugging Face row (info.row, from `rows`) is cached as row-<n>, its record carrying the
    rows' fingerprint (which changes when the dataset does). With `reference_ds` (Kontext's
    conditioning dataset) the image's reference is cached with it: reference_strict cuts it
    exactly like the image, reference_loose by the conditioning dataset's own size and crop."""
    path = Path(info.path)
    row = getattr(info, "row", None)
    tw, th = info.target
    geo = data.geometry(info.width, info.height, (tw, th), crop_style=ds.crop_style, rng_key=f"{path}{seed_key}")
    shrink = data.downsample_size(info.width, info.height, ds)
    mask = Path(info.mask) if getattr(info, "mask", None) else None
    ref = Path(info.reference) if reference_ds is not None and getattr(info, "reference", None) else None
    ref_geo, ref_shrink = None, None
    if ref is not None and reference_ds.conditioning_type == "reference_strict":
        ref_geo, ref_shrink = geo, None  # stretched to the image's size, then the image's own cut
    elif ref is not None:
        rw, rh = info.reference_size
        ref_geo = data.geometry(rw, rh, info.reference_target, crop_style=reference_ds.crop_style, rng_key=str(ref))
        ref_shrink = data.downsample_size(rw, rh, reference_ds)
    record = data.short_hash(
        CACHE_FORMAT,
        data.file_key(path) if row is None else f"{rows.fingerprint}:{rows.image_column}:{row}",
        geo.key(),
        shrink,
        vae_id,
        data.file_key(mask) if mask else "",
        *([data.file_key(ref), ref_geo.key(), ref_shrink] if ref is not None and ref_geo is not None else []),
        n=24,
    )
    if row is None:
        name = f"{path.stem[:40]}-{data.short_hash(path.resolve(), n=10)}-{tw}x{th}.safetensors"
    else:  # the folder is the dataset id's: the row number names it
        name = f"row-{row}-{tw}x{th}.safetensors"
    return Entry(
        dataset=dataset_index,
        image=path,
        captions=tuple(info.captions),
        bucket=(tw, th),
        latent=folder / name,
        record=record,
        geometry=geo,
        shrink_to=shrink,
        mask=mask,
        regularisation=bool(ds.is_regularisation_data),
        row=row,
        rows=rows if row is not None else None,
        reference=ref,
        reference_geometry=ref_geo,
        reference_shrink=ref_shrink,
    )


def is_cached(entry: Entry) -> bool:
    meta = _metadata(entry.latent)
    return meta is not None and meta.get("record") == entry.record


def cache_latents(
    entries: Sequence[Entry],
    vae: Any,
    *,
    device: Any,
    batch_size: int,
    progress: Callable[[int, int], None],
    failed: Callable[[Entry, str], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Entry]:
    """Encode every entry whose cache file is missing or stale. Returns the usable entries;
    images that cannot be decoded are reported through `failed` and left out."""
    total = len(entries)
    todo = [e for e in entries if not is_cached(e)]
    done = total - len(todo)
    progress(done, total)
    bad: set[Path] = set()
    by_size: dict[tuple[int, int], list[Entry]] = {}
    for e in todo:
        by_size.setdefault((e.geometry.target_w, e.geometry.target_h), []).append(e)
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            if should_stop():
                return []
            chunk, pixels = [], []
            for e in group[start : start + batch_size]:
                try:
                    im = data.apply_geometry(data.load_rgb(e.source(), e.shrink_to), e.geometry)
                except Exception as exc:  # PIL raises many kinds for broken files
                    failed(e, _why(exc))
                    bad.add(e.latent)
                    continue
                chunk.append(e)
                pixels.append(data.to_tensor(im))
            references = _encode_references(chunk, vae, device, failed, bad)
            pixels = [px for e, px in zip(chunk, pixels) if e.latent not in bad]
            chunk = [e for e in chunk if e.latent not in bad]
            if chunk:
                for e, lat in zip(chunk, _encode(vae, pixels, device)):
                    tensors = {"latent": lat}
                    if e.reference is not None:
                        tensors["reference"] = references[e.latent]
                    if e.mask is not None:
                        tensors["mask"] = data.mask_tensor(
                            e.mask, _source_size(e), e.geometry, (lat.shape[-2], lat.shape[-1])
                        )
                    atomic_save(tensors, e.latent, {"record": e.record, "image": str(e.image)})
            done += len(group[start : start + batch_size])
            progress(done, total)
    return [e for e in entries if e.latent not in bad]


def _encode(vae: Any, pixels: list[torch.Tensor], device: Any) -> torch.Tensor:
    x = torch.stack(pixels).to(device=device, dtype=vae.dtype)
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mode()
    return (raw - float(vae.config.shift_factor or 0.0)) * float(vae.config.scaling_factor)


def _encode_references(
    chunk: list[Entry], vae: Any, device: Any, failed: Callable[[Entry, str], None], bad: set[Path]
) -> dict[Path, torch.Tensor]:
    """The chunk's reference latents by the entry's cache file; an entry whose reference cannot
    be decoded is reported and left out (its edit alone would train text-to-image)."""
    by_size: dict[tuple[int, int], list[tuple[Entry, torch.Tensor]]] = {}
    for e in chunk:
        if e.reference is None or e.reference_geometry is None:
            continue
        try:
            im = data.apply_geometry(data.load_rgb(e.reference, e.reference_shrink), e.reference_geometry)
        except Exception as exc:  # PIL raises many kinds for broken files
            failed(e, f"its reference {e.reference.name}: {_why(exc)}")
            bad.add(e.latent)
            continue
        size = (e.reference_geometry.target_w, e.reference_geometry.target_h)
        by_size.setdefault(size, []).append((e, data.to_tensor(im)))
    out = {}
    for group in by_size.values():
        for e, lat in zip((e for e, _ in group), _encode(vae, [px for _, px in group], device)):
            out[e.latent] = lat
    return out


def _source_size(e: Entry) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(e.image) as im:
        return ImageOps.exif_transpose(im).size


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_latent(entry: Entry) -> tuple[torch.Tensor, torch.Tensor | None]:
    t = load_file(entry.latent)
    return t["latent"], t.get("mask")


def load_sample(entry: Entry) -> dict[str, torch.Tensor]:
    """Everything cached for one image: latent, and where present mask and reference."""
    return load_file(entry.latent)


# -- text embeddings --------------------------------------------------------------------------


def text_identity(models: Any) -> str:
    """What the embeddings are made with, from the encoders' configs: known without loading them."""
    configs = [
        json.dumps(models.configs.get(n, {}), sort_keys=True, default=str) for n in ("text_encoder", "text_encoder_2")
    ]
    precisions = getattr(models, "precisions", {}) or {}
    return data.short_hash(
        models.source, *configs, precisions.get("text_encoder"), precisions.get("text_encoder_2"), models.weight_dtype
    )


class TextCache:
    def __init__(self, folder: Path, encoder_id: str, max_length: int):
        self.folder = Path(folder)
        self.encoder_id = encoder_id
        self.max_length = max_length

    def path(self, caption: str) -> Path:
        key = data.short_hash(caption, self.encoder_id, self.max_length, n=32)
        return self.folder / key[:2] / f"{key}.safetensors"

    def missing(self, captions: Sequence[str]) -> list[str]:
        return [c for c in dict.fromkeys(captions) if _metadata(self.path(c)) is None]

    def build(
        self,
        models: Any,
        captions: Sequence[str],
        *,
        device: Any,
        batch_size: int,
        progress: Callable[[int, int], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        from .models import encode_prompts

        unique = list(dict.fromkeys(captions))
        todo = self.missing(unique)
        done = len(unique) - len(todo)
        progress(done, len(unique))
        for start in range(0, len(todo), batch_size):
            if should_stop():
                return
            chunk = todo[start : start + batch_size]
            for sub in range(0, len(chunk), T5_ENCODE_BATCH):
                part = list(chunk[sub : sub + T5_ENCODE_BATCH])
                t5, pooled, mask = encode_prompts(models, part, device=device, max_length=self.max_length)
                for i, caption in enumerate(part):
                    atomic_save(
                        {"t5": t5[i], "pooled": pooled[i], "mask": mask[i]},
                        self.path(caption),
                        {"caption": caption[:2000]},
                    )
            done += len(chunk)
            progress(done, len(unique))

    def load(self, caption: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = load_file(self.path(caption))
        return t["t5"], t["pooled"], t["mask"]

    def load_batch(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [self.load(c) for c in captions]
        return tuple(torch.stack(x) for x in zip(*parts))  # type: ignore[return-value]


# -- both, for a run -------------------------------------------------------------------------


def build_all(
    project: Any, reports: list[Any], m: Any, accelerator: Any, tel: Any, should_stop: Callable[[], bool]
) -> tuple[list[Entry], TextCache]:
    """Text embeddings (captions and validation prompts), then latents, on rank 0 while the
    others wait; every rank then keeps only the images whose latents exist.

    Each stage has only its own models on the accelerator: the text encoders are loaded when
    an embedding is missing and freed before the VAE is loaded, the VAE only when a latent is
    missing, freed before the transformer arrives. Warm caches load neither."""
    from . import validation
    from .setup import RunFailed, rel

    ws_root = project.workspace
    vae_id = vae_identity(m)
    entries = []
    for i, report in enumerate(reports):
        ds = project.datasets[report.index]
        folder = project.resolve(ds.cache_dir_vae) if ds.cache_dir_vae else ws_root / "cache" / "vae" / ds.id
        rows = getattr(report, "rows", None)
        refs = reference_dataset(project, ds, m.flavour)
        entries += [
            make_entry(i, ds, info, folder=folder, vae_id=vae_id, rows=rows, reference_ds=refs)
            for info in report.images
        ]
    paired = sum(e.reference is not None for e in entries)
    if paired:
        tel.log(f"Kontext: {paired} of {len(entries)} images edit a reference (conditioning_data)")
    text_cache = TextCache(project.resolve(project.text_embeds.cache_dir), text_identity(m), m.t5_max_length)
    captions = [c for e in entries for c in e.captions] + validation.texts_to_cache(project)
    if project.training.caption_dropout_probability > 0:
        captions.append("")  # the dropped caption's embedding

    if accelerator.is_main_process:

        def failed(entry: Any, why: str) -> None:
            ds_key = f"datasets[{reports[entry.dataset].index}]"
            shown = rel(entry.image, ws_root)
            where = "instance_data_dir" if entry.row is None else "image_column"
            tel.warning(f"cannot decode {shown}: {why}; left out of training", f"{ds_key}.{where}")

        _cache_text(project, m, text_cache, captions, accelerator.device, tel, should_stop)
        if not should_stop():
            _cache_latents(project, m, entries, accelerator.device, tel, failed, should_stop)
    accelerator.wait_for_everyone()
    usable = [e for e in entries if is_cached(e)]
    if not usable and not should_stop():
        raise RunFailed("no image could be used for training: every one failed to decode (see the warnings)")
    return usable, text_cache


def _cache_text(
    project: Any, m: Any, text_cache: TextCache, captions: list[str], device: Any, tel: Any, should_stop: Any
) -> None:
    from . import models

    def progress(done: int, total: int) -> None:
        tel.stage("cache_text", done, total, resident=models.resident(m))

    unique = list(dict.fromkeys(captions))
    missing = text_cache.missing(unique)
    if missing:
        progress(len(unique) - len(missing), len(unique))  # opens the stage: its peaks include loading
        models.load_text_encoders(m, project, device=device, log=tel.log)
        tel.log(f"text encoders loaded on {device} for the text cache")
    try:
        text_cache.build(
            m,
            captions,
            device=device,
            batch_size=project.text_embeds.write_batch_size,
            progress=progress,
            should_stop=should_stop,
        )
    finally:
        if m.text_encoder is not None or m.text_encoder_2 is not None:
            models.free_text_encoders(m)
            tel.log("text encoders freed")


def _cache_latents(
    project: Any, m: Any, entries: list[Entry], device: Any, tel: Any, failed: Any, should_stop: Any
) -> None:
    from fluxtui.core.estimate import vae_encode_plan

    from . import models

    def progress(done: int, total: int) -> None:
        tel.stage("cache_latents", done, total, resident=models.resident(m))

    cached = sum(is_cached(e) for e in entries)
    progress(cached, len(entries))  # opens the stage: its peaks include loading
    if cached == len(entries):
        return
    models.load_vae(m, project, device=device, log=tel.log)
    plan = vae_encode_plan(project)
    configure_vae(
        m.vae,
        tiling=project.memory.vae_enable_tiling or plan.tile_px is not None,
        tile_px=plan.tile_px,
        slicing=plan.slicing,
    )
    tel.log(f"VAE loaded on {device} for the latent cache ({plan.describe()})")
    try:
        cache_latents(
            entries,
            m.vae,
            device=device,
            batch_size=project.training.vae_batch_size,
            progress=progress,
            failed=failed,
            should_stop=should_stop,
        )
    finally:
        models.free_vae(m)
        tel.log("VAE freed")


def configure_vae(vae: Any, *, tiling: bool, tile_px: int | None = None, slicing: bool = False) -> None:
    """Tiles (of ``tile_px`` pixels a side, else the VAE's own sample size) and one image at a
    time, as the estimate chose so that encoding or decoding stays under the training step."""
    if slicing:
        vae.enable_slicing()
    if tiling:
        if tile_px:
            levels = 2 ** (len(vae.config.block_out_channels) - 1)
            vae.tile_sample_min_size = tile_px
            vae.tile_latent_min_size = tile_px // levels
        vae.enable_tiling()


def reference_dataset(project: Any, ds: Any, flavour: str) -> Any:
    """The conditioning dataset whose images are `ds`'s references: Kontext only (for another
    flavour validate has warned that they are ignored)."""
    from fluxtui.core.datasets import conditioning_index

    if flavour != "kontext" or not ds.conditioning_data:
        return None
    ci = conditioning_index(project, str(ds.conditioning_data))
    return None if ci is None else project.datasets[ci]


def bucketed(
    project: Any, reports: list[Any], entries: list[Any]
) -> list[tuple[Any, dict[tuple[int, int], list[Any]]]]:
    """Per active dataset: its config and its usable entries grouped by bucket."""
    out = []
    for i, report in enumerate(reports):
        buckets: dict[tuple[int, int], list[Any]] = {}
        for e in entries:
            if e.dataset == i:
                buckets.setdefault(e.bucket, []).append(e)
        out.append((project.datasets[report.index], buckets))
    return out
