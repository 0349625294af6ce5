"""The bucketed batch stream and the image transforms in front of the latent cache.

The stream is a pure function of (seed, batch index): batch g of the run is computed from
the epoch it falls in, so resuming at a data position continues the same order, and every
process takes its own batches (g = position + rank) from the one shared order.

Per epoch (SPEC.md, Datasets): each dataset's buckets are listed (repeats + 1) times and
shuffled; a bucket is cut into batches of `batch_size`, and its last short batch is filled
by drawing again from the same bucket, so a batch never mixes buckets and no image is
dropped. Each batch comes from one dataset; the datasets' batches are interleaved at random
with weights `probability` until every dataset has given all of its batches.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- the sampler ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerDataset:
    """What the sampler needs of one dataset: its buckets of items, repeats and weight."""

    buckets: dict[Any, Sequence[Any]]  # bucket key (its exact (w, h) target) -> items
    repeats: int = 0
    probability: float = 1.0


@dataclass(frozen=True)
class Batch:
    dataset: int  # index into the sampler's datasets
    bucket: Any
    items: tuple[Any, ...]
    epoch: int  # 1-based
    index: int  # global batch index g


class BucketSampler:
    def __init__(self, datasets: Sequence[SamplerDataset], batch_size: int, seed: int):
        self.datasets = list(datasets)
        self.batch_size = batch_size
        self.seed = seed
        self._plan_epoch = -1
        self._plan: list[tuple[int, Any, tuple[Any, ...]]] = []
        self.epoch_length = sum(self._batches_in(i) for i in range(len(self.datasets)))
        if self.epoch_length == 0:
            raise ValueError("no batches: every dataset is empty or has probability 0")

    def _batches_in(self, i: int) -> int:
        d = self.datasets[i]
        if d.probability <= 0:
            return 0
        return sum(math.ceil(len(items) * (d.repeats + 1) / self.batch_size) for items in d.buckets.values() if items)

    def batch(self, g: int) -> Batch:
        """The g-th batch of the run (0-based), the same for every call and every process."""
        epoch, k = divmod(g, self.epoch_length)
        plan = self.epoch_plan(epoch)
        ds, bucket, items = plan[k]
        return Batch(ds, bucket, items, epoch + 1, g)

    def epoch_plan(self, epoch: int) -> list[tuple[int, Any, tuple[Any, ...]]]:
        if epoch != self._plan_epoch:
            self._plan = self._make_plan(epoch)
            self._plan_epoch = epoch
        return self._plan

    def _make_plan(self, epoch: int) -> list[tuple[int, Any, tuple[Any, ...]]]:
        # A string seed is hashed with sha512 by random.Random: stable across processes and
        # Python runs (unlike hash()).
        rng = random.Random(f"fluxtui-sampler-{self.seed}-{epoch}")
        per_dataset: list[list[tuple[Any, tuple[Any, ...]]]] = []
        for d in self.datasets:
            batches: list[tuple[Any, tuple[Any, ...]]] = []
            if d.probability > 0:
                for bucket in sorted(d.buckets):
                    items = list(d.buckets[bucket])
                    if not items:
                        continue
                    pool = items * (d.repeats + 1)
                    rng.shuffle(pool)
                    for start in range(0, len(pool), self.batch_size):
                        chunk = pool[start : start + self.batch_size]
                        if len(chunk) < self.batch_size:
                            chunk += rng.choices(items, k=self.batch_size - len(chunk))
                        batches.append((bucket, tuple(chunk)))
                rng.shuffle(batches)
            per_dataset.append(batches)

        plan: list[tuple[int, Any, tuple[Any, ...]]] = []
        cursor = [0] * len(per_dataset)
        while True:
            live = [i for i, b in enumerate(per_dataset) if cursor[i] < len(b)]
            if not live:
                break
            (i,) = rng.choices(live, weights=[self.datasets[j].probability for j in live])
            bucket, items = per_dataset[i][cursor[i]]
            cursor[i] += 1
            plan.append((i, bucket, items))
        return plan


def steps_for_epochs(epochs: int, epoch_length: int, batches_per_step: int) -> int:
    """Optimizer steps that cover `epochs` epochs (batches_per_step = accumulation x processes)."""
    return max(1, math.ceil(epochs * epoch_length / batches_per_step))


def pick_caption(captions: Sequence[str], seed: int, g: int, slot: int, *, dropout: float = 0.0) -> str:
    """One of an image's captions, reproducibly for (seed, batch, slot in batch); with
    caption dropout, the empty caption on that share of samples (SimpleTuner's meaning)."""
    if dropout > 0 and random.Random(f"fluxtui-dropout-{seed}-{g}-{slot}").random() < dropout:
        return ""
    if len(captions) <= 1:
        return captions[0] if captions else ""
    return random.Random(f"fluxtui-caption-{seed}-{g}-{slot}").choice(list(captions))


# -- crops and resizes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """How a source image becomes a training image: resize to (resize_w, resize_h), then
    crop (left, top, left + target_w, top + target_h)."""

    resize_w: int
    resize_h: int
    left: int
    top: int
    target_w: int
    target_h: int

    def key(self) -> str:
        return f"{self.resize_w}x{self.resize_h}+{self.left}+{self.top}:{self.target_w}x{self.target_h}"


def geometry(src_w: int, src_h: int, target: tuple[int, int], *, crop_style: str, rng_key: str = "") -> Geometry:
    """Scale to cover the target keeping the aspect, then cut the target out (center,
    top-left corner, or a random place that is the same for the same image every time, so
    caches stay valid). With crop = false the target has the image's own aspect, so only the
    sliver the alignment leaves is cut (SimpleTuner's intermediary size, then its crop)."""
    tw, th = target
    scale = max(tw / src_w, th / src_h)
    rw, rh = max(tw, math.ceil(src_w * scale - 1e-6)), max(th, math.ceil(src_h * scale - 1e-6))
    if crop_style == "corner":
        left, top = 0, 0
    elif crop_style == "random":
        rng = random.Random(f"fluxtui-crop-{rng_key}")
        left, top = rng.randint(0, rw - tw), rng.randint(0, rh - th)
    else:
        left, top = (rw - tw) // 2, (rh - th) // 2
    return Geometry(rw, rh, left, top, tw, th)


def downsample_size(w: int, h: int, ds: Any) -> tuple[int, int] | None:
    """maximum_image_size / target_downsample_size (in the dataset's resolution unit): the
    size to shrink an oversized image to before the final resize, or None."""
    if not ds.maximum_image_size or not ds.target_downsample_size:
        return None
    if ds.resolution_type == "pixel":
        measure, target = min(w, h), ds.target_downsample_size
        factor = target / measure
    else:
        measure = w * h / 1e6
        limit = ds.maximum_image_size
        target = ds.target_downsample_size
        if ds.resolution_type == "pixel_area":
            limit, target = limit**2 / 1e6, target**2 / 1e6
        if measure <= limit:
            return None
        factor = math.sqrt(target / measure)
    if ds.resolution_type == "pixel" and min(w, h) <= ds.maximum_image_size:
        return None
    if factor >= 1:
        return None
    return max(1, round(w * factor)), max(1, round(h * factor))


def load_rgb(path: Path | bytes, shrink_to: tuple[int, int] | None = None) -> Any:
    """A PIL RGB image with EXIF orientation applied (ValueError/OSError when unreadable or
    damaged, see check_integrity), first shrunk to `shrink_to` when given (a two-stage
    resize keeps big images sharp). `path` may be the image's bytes (a dataset row)."""
    import io

    from PIL import Image, ImageOps

    def opened() -> Any:
        return Image.open(io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path)

    with opened() as src:
        if src.format == "PNG":  # chunk CRCs: decoding alone does not check them
            with opened() as whole:
                whole.verify()
        src.load()
        check_integrity(path, src)
        im = ImageOps.exif_transpose(src)
        im = im.convert("RGB")
    if shrink_to is not None:
        im = im.resize(shrink_to, Image.Resampling.LANCZOS)
    return im


def check_integrity(path: Path | bytes, im: Any) -> None:
    """ValueError for a JPEG cut short with an end marker appended: libjpeg fills what is
    missing with flat grey (128) and says nothing, so the bottom rows would train as grey.
    A flat-grey last row is the hint; decoding again without the end marker proves it (a
    complete baseline file decodes fine without it, a cut one reports truncation). Progressive
    files are not checked: a cut one decodes blurred, and the proof does not hold for them."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L") or im.info.get("progressive") or im.info.get("progression"):
        return
    import io

    import numpy as np
    from PIL import Image

    last = np.asarray(im.crop((0, im.height - 1, im.width, im.height)))
    if not (last == 128).all():
        return
    raw = bytes(path) if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
    end = raw.rfind(b"\xff\xd9")
    try:
        with Image.open(io.BytesIO(raw[: end if end > 0 else len(raw)])) as again:
            again.load()
    except OSError as exc:
        if "truncated" in str(exc) and "(0 bytes" not in str(exc):
            raise ValueError(
                "truncated JPEG: its image data ends early (an end marker follows the cut), "
                "so the bottom decodes as flat grey; re-export or remove the file"
            ) from None


def apply_geometry(im: Any, geo: Geometry, resample: Any = None) -> Any:
    from PIL import Image

    resample = Image.Resampling.LANCZOS if resample is None else resample
    if (im.width, im.height) != (geo.resize_w, geo.resize_h):
        im = im.resize((geo.resize_w, geo.resize_h), resample)
    if (geo.resize_w, geo.resize_h) != (geo.target_w, geo.target_h):
        im = im.crop((geo.left, geo.top, geo.left + geo.target_w, geo.top + geo.target_h))
    return im


def to_tensor(im: Any) -> Any:
    """PIL RGB -> float tensor [3, H, W] in [-1, 1] (the VAE's input range)."""
    import numpy as np
    import torch

    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def mask_tensor(path: Path, src_size: tuple[int, int], geo: Geometry, latent_hw: tuple[int, int]) -> Any:
    """A loss mask (white = full weight) cut like its image, at latent resolution [1, h, w]."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageOps

    with Image.open(path) as m:
        m = ImageOps.exif_transpose(m).convert("L")
    if m.size != src_size:  # masks are drawn on the original image
        m = m.resize(src_size, Image.Resampling.BILINEAR)
    m = apply_geometry(m, geo, Image.Resampling.BILINEAR)
    t = torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0)[None, None]
    return F.interpolate(t, size=latent_hw, mode="area")[0]


def file_key(path: Path) -> str:
    """Identity of an image file's content as the cache sees it: size and mtime."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def short_hash(*parts: object, n: int = 16) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]
