"""Scan dataset folders: sizes from image headers, captions, aspect buckets, the size rule.

The scan never decodes pixels (core/imagesize.py reads headers) and keeps what it learned in
`<workspace>/cache/scan/<dataset-id>.json`, keyed by (relative path, size, mtime_ns): a
second scan only lists the folder and stats the files. The trainer builds its dataset from
these reports, so what `fluxtui validate` counts is what training uses.
"""

from __future__ import annotations

import codecs
import dataclasses
import errno
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR
from typing import Any, NamedTuple

from . import imagesize
from .config import Project, Section, atomic_write_text
from .imagesize import IMAGE_EXTENSIONS
from .problems import Problem
from .rules.base import problem_at, process_count, visible_gpu_count

CACHE_VERSION = 1
# Target sides are multiples of this. SimpleTuner forces 64 px for Flux (its
# aspect_bucket_alignment; the VAE's 8x and the 2x2 packing alone would allow 16).
ALIGN = 64
# crop_aspect = "random" offers a bucket only when the image covers its target with this much
# to spare on both sides (no upscaling); none fits -> 1:1, as in SimpleTuner.
RANDOM_ASPECT_MARGIN = 1.2
SHOWN = 5  # file names quoted in one problem message

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetReport",
    "ImageInfo",
    "SkippedFile",
    "bucket_of",
    "cache_file",
    "process_count",
    "scan_dataset",
    "scan_project",
    "target_size",
    "too_small",
    "visible_gpu_count",
]


@dataclass(frozen=True)
class ImageInfo:
    path: Path  # absolute
    width: int  # as displayed: EXIF orientations 5-8 swapped
    height: int
    captions: tuple[str, ...]  # per caption_strategy; textfile: one caption per non-empty line
    target: tuple[int, int]  # training size (w, h): sides multiples of 64
    mask: Path | None = None  # from mask_data_dir (same relative name), if any
    row: int | None = None  # type = "huggingface": the row (path is then <folder>/row-<n> or its file)
    # Kontext: the same-named image of the conditioning dataset (conditioning_data), its size as
    # displayed, and the size its latent is made at (reference_strict: the edit's own target).
    reference: Path | None = None
    reference_size: tuple[int, int] | None = None
    reference_target: tuple[int, int] | None = None

    @property
    def bucket(self) -> tuple[int, int]:
        """A bucket is its exact target size: images in it always stack into one batch."""
        return self.target


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class DatasetReport:
    index: int  # position in project.datasets (keys are datasets[index].*)
    id: str
    folder: Path
    images: list[ImageInfo] = field(default_factory=list)  # usable images, sorted by path
    skipped: list[SkippedFile] = field(default_factory=list)
    buckets: dict[tuple[int, int], list[ImageInfo]] = field(default_factory=dict)  # (w, h) -> images, by aspect
    uncaptioned: list[Path] = field(default_factory=list)  # usable images that fell back to the file name
    unpaired: list[Path] = field(default_factory=list)  # conditioning_data: left out, no same-named reference
    batches_per_epoch: int = 0  # micro-batches one process runs per epoch (all buckets, repeats included)
    problems: list[Problem] = field(default_factory=list)
    processes: int = 1
    gradient_accumulation_steps: int = 1
    source: str = ""  # type = "huggingface": what was loaded (folder or hub id, split)
    rows: Any = field(default=None, repr=False, compare=False)  # its core.hf_datasets.Rows

    @property
    def captioned(self) -> int:
        return len(self.images) - len(self.uncaptioned)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer updates per epoch from this dataset alone."""
        return math.ceil(self.batches_per_epoch / max(1, self.gradient_accumulation_steps))

    def to_json(self, relative_to: Path | None = None) -> dict:
        def rel(p: Path) -> str:
            return _display(p, relative_to)

        return {
            "index": self.index,
            "id": self.id,
            "folder": rel(self.folder),
            **({"source": self.source} if self.source else {}),
            "images": len(self.images),
            "captioned": self.captioned,
            "uncaptioned": [rel(p) for p in self.uncaptioned],
            **({"unpaired": [rel(p) for p in self.unpaired]} if self.unpaired else {}),
            "buckets": [
                {"aspect": aspect_of(size), "images": len(items), "target": list(size)}
                for size, items in self.buckets.items()
            ],
            "batches_per_epoch": self.batches_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "processes": self.processes,
            "skipped": [{"path": rel(s.path), "reason": s.reason} for s in self.skipped],
            "problems": [p.to_json() for p in self.problems],
        }


def aspect_of(size: tuple[int, int]) -> float:
    """A bucket's aspect w/h, rounded for display (never used as a key)."""
    return round(size[0] / size[1], 2)


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return Path(path).relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


# -- sizes ------------------------------------------------------------------------------------


def _align(x: float) -> int:
    return max(ALIGN, math.floor(x / ALIGN + 0.5) * ALIGN)


def _area_px(value: float, resolution_type: str) -> float:
    """Pixel area meant by a size in the dataset's unit (area: megapixels; else an edge)."""
    return value * 1e6 if resolution_type == "area" else value * value


def _measure(width: int, height: int, resolution_type: str) -> float:
    """An image's size in the dataset's unit: shorter edge, megapixels, or sqrt(area)."""
    if resolution_type == "pixel":
        return min(width, height)
    if resolution_type == "area":
        return width * height / 1e6
    return math.sqrt(width * height)


def _scale_to(width: float, height: float, size: float, resolution_type: str) -> tuple[float, float]:
    """Resize keeping the aspect so that the image measures `size` in the dataset's unit."""
    aspect = width / height
    if resolution_type == "pixel":
        return (size, size / aspect) if width <= height else (size * aspect, size)
    area = _area_px(size, resolution_type)
    return math.sqrt(area * aspect), math.sqrt(area / aspect)


def target_size(width: int, height: int, ds: Section, rng_key: str = "") -> tuple[int, int]:
    """Training size (w, h) of an image, sides multiples of 64 (SimpleTuner's meaning).

    crop = false: the image keeps its aspect; resized to the resolution in its unit, sides
    rounded to the alignment (the sliver is trimmed when cropping to it). crop = true:
    crop_aspect "square" is 1:1, "preserve" the image's aspect, "closest" / "random" an aspect
    from crop_aspect_buckets (random: one the image covers without upscaling, else 1:1)."""
    kind = ds.resolution_type
    resolution = max(float(ds.resolution or 0), 1e-6)
    crop = bool(getattr(ds, "crop", False))
    if crop and ds.crop_aspect == "square":
        edge = _align(math.sqrt(_area_px(resolution, kind)) if kind != "pixel" else resolution)
        return edge, edge
    w, h = float(max(1, width)), float(max(1, height))
    big, down = ds.maximum_image_size, ds.target_downsample_size
    if big and down and _measure(w, h, kind) > big:
        w, h = (max(1.0, round(v)) for v in _scale_to(w, h, down, kind))
    if crop and ds.crop_aspect in ("closest", "random"):
        aspect = crop_aspect_for(w, h, ds, rng_key)
        w, h = aspect, 1.0
    tw, th = _scale_to(w, h, resolution, kind)
    return _align(tw), _align(th)


def crop_aspect_for(width: float, height: float, ds: Section, rng_key: str = "") -> float:
    """The aspect crop_aspect "closest" / "random" crops an image to, from crop_aspect_buckets.
    random is reproducible per image (rng_key), so the scan and every run agree."""
    buckets = [float(b) for b in (getattr(ds, "crop_aspect_buckets", None) or []) if b > 0]
    if not buckets:
        return 1.0
    if ds.crop_aspect == "closest":
        aspect = round(width / height, 2)
        return min(buckets, key=lambda b: abs(b - aspect))
    resolution = max(float(ds.resolution or 0), 1e-6)
    fits = []
    for b in buckets:
        tw, th = _scale_to(b, 1.0, resolution, ds.resolution_type)
        if _align(tw) * RANDOM_ASPECT_MARGIN < width and _align(th) * RANDOM_ASPECT_MARGIN < height:
            fits.append(b)
    return random.Random(f"fluxtui-aspect-{rng_key}").choice(fits) if fits else 1.0


def bucket_of(target: tuple[int, int], ds: Section) -> tuple[int, int]:
    """The bucket of a target size: the size itself (two sizes never share a bucket)."""
    return tuple(target)  # type: ignore[return-value]


def too_small(width: int, height: int, ds: Section) -> str | None:
    """Why an image is below minimum_image_size (in the resolution's unit), or None."""
    m = ds.minimum_image_size
    if not m:
        return None
    kind = ds.resolution_type
    if kind == "pixel" and min(width, height) < m:
        return f"smaller than minimum_image_size ({width}x{height} < {m:g})"
    if kind == "area" and width * height / 1e6 < m:
        return f"smaller than minimum_image_size ({width}x{height} = {width * height / 1e6:.2f} MP < {m:g} MP)"
    if kind == "pixel_area" and width * height < m * m:
        return f"smaller than minimum_image_size ({width}x{height} < {m:g}x{m:g} px of area)"
    return None


# -- walking the folder -----------------------------------------------------------------------


class _Entry(NamedTuple):
    rel: str  # posix path relative to the dataset folder
    stem: str  # rel without its extension
    parent: Path  # the folder it was found in (as walked, links not resolved)
    name: str
    size: int
    mtime_ns: int

    @property
    def path(self) -> Path:
        return _child(self.parent, self.name)


# Path / name re-parses the whole path; building a child from a parsed parent is ~4x cheaper,
# which matters on a warm scan of many thousands of files. Plain `/` where the helper is gone.
_make_child = getattr(Path, "_make_child_relpath", None)


def _child(parent: Path, name: str) -> Path:
    return _make_child(parent, name) if _make_child is not None else parent / name


@dataclass
class _Listing:
    images: list[_Entry] = field(default_factory=list)
    texts: dict[str, _Entry] = field(default_factory=dict)  # relative stem -> caption file
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (rel path, reason)
    unreadable_dirs: list[tuple[str, str]] = field(default_factory=list)


def _walk(folder: Path, skip_dirs: set[str], want_texts: bool) -> _Listing:
    """List image files (and caption files) under folder, following directory links once
    each: a link back up the tree (a loop) is skipped, never walked forever. Hidden files and
    folders (a leading dot) are skipped."""
    out = _Listing()
    seen = set()
    try:
        st = os.stat(folder)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return out
    stack = [("", folder)]
    while stack:
        rel_dir, dir_path = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                entries = list(it)
        except OSError as e:
            out.unreadable_dirs.append((rel_dir or ".", _os_reason(e)))
            continue
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            dot = name.rfind(".")
            ext = name[dot:].lower() if dot > 0 else ""
            is_image = ext in IMAGE_EXTENSIONS
            if is_image or (want_texts and ext == ".txt"):
                try:
                    st = entry.stat()
                except OSError as e:  # a link to itself (ELOOP), a broken link, permissions
                    if is_image:
                        out.unreadable.append((rel_dir + name, _os_reason(e)))
                    continue
                if not S_ISDIR(st.st_mode):
                    rel = rel_dir + name
                    item = _Entry(rel, rel[: len(rel) - len(ext)], dir_path, name, st.st_size, st.st_mtime_ns)
                    if is_image:
                        out.images.append(item)
                    else:
                        out.texts[item.stem] = item
                    continue
            else:
                try:
                    if not entry.is_dir():
                        continue
                    st = entry.stat()
                except OSError:
                    continue
            ident = (st.st_dev, st.st_ino)  # a folder, walked once whatever links lead to it
            if ident in seen or os.path.realpath(entry.path) in skip_dirs:
                continue
            seen.add(ident)
            stack.append((rel_dir + name + "/", _child(dir_path, name)))
    out.images.sort()
    return out


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "cannot read: symlink loop"
    if e.errno == errno.ENOENT:
        return "cannot read: broken link"
    return f"cannot read: {e.strerror or e}"


# -- the metadata cache -----------------------------------------------------------------------


def cache_file(project: Project, dataset_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", dataset_id) or "dataset"
    return _workspace(project) / "cache" / "scan" / f"{safe}.json"


def _workspace(project: Project) -> Path:
    return Path(os.path.abspath(project.workspace))


class _Cache:
    """(relative path, size, mtime_ns) -> header facts and captions; rewritten only when
    something changed. Without a path it only reads files (cache=False)."""

    def __init__(self, path: Path | None, folder: Path):
        self.path, self.folder = path, str(folder)
        self.images: dict[str, list] = {}
        self.captions: dict[str, list] = {}
        self.used_images: dict[str, list] = {}
        self.used_captions: dict[str, list] = {}
        self.dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == CACHE_VERSION and data.get("folder") == self.folder:
                    images, captions = dict(data["images"]), dict(data["captions"])
                    # A hand-edited or damaged file must not break the scan: all or nothing.
                    if all(type(v) is list and len(v) == 5 for v in images.values()) and all(
                        type(v) is list and len(v) == 3 and type(v[2]) is list for v in captions.values()
                    ):
                        self.images, self.captions = images, captions
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # no cache or an unreadable one: scan cold

    def header(self, e: _Entry) -> tuple[int, int, str | None]:
        """(width, height, reason the file is unusable or None)."""
        hit = self.images.get(e.rel)
        if hit is None or hit[0] != e.size or hit[1] != e.mtime_ns:
            try:
                h = imagesize.read_header(e.path, e.size)
                hit = [e.size, e.mtime_ns, h.width, h.height, h.reason]
            except OSError as err:
                # Read errors (permissions, links) can go away without the file changing:
                # reported, never cached.
                return 0, 0, _os_reason(err)
            self.dirty = True
        self.used_images[e.rel] = hit
        return hit[2], hit[3], hit[4]

    def captions_of(self, e: _Entry) -> tuple[str, ...]:
        hit = self.captions.get(e.rel)
        if hit is None or hit[0] != e.size or hit[1] != e.mtime_ns:
            hit = [e.size, e.mtime_ns, list(_read_captions(e.path))]
            self.dirty = True
        self.used_captions[e.rel] = hit
        return tuple(hit[2])

    def save(self) -> None:
        if self.path is None:
            return
        if (
            not self.dirty
            and len(self.used_images) == len(self.images)
            and len(self.used_captions) == len(self.captions)
        ):
            return  # nothing new, nothing removed
        data = {
            "version": CACHE_VERSION,
            "folder": self.folder,
            "images": self.used_images,
            "captions": self.used_captions,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, separators=(",", ":")))
        except OSError:
            pass  # a read-only workspace scans cold every time; nothing breaks


class CaptionUnreadable(ValueError):
    """A caption file that is neither UTF-8 nor UTF-16/32 with a BOM; the message names the
    file's line and the byte, so nothing is trained on a mangled caption."""


def decode_caption(raw: bytes, name: str) -> str:
    """Caption bytes as text: UTF-8 (a BOM allowed), UTF-16/32 when a BOM says so; else
    CaptionUnreadable naming `name`, the line and the byte (never a silent U+FFFD)."""
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    encoding = next((enc for bom, enc in boms if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].decode(encoding, errors="replace").count("\n") + 1
        label = "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding.upper()
        raise CaptionUnreadable(
            f"unreadable caption: {name} line {line} is not valid {label} (byte 0x{raw[e.start]:02x}); "
            "save it as UTF-8 (or UTF-16 with a BOM)"
        ) from None


def _read_captions(path: Path) -> tuple[str, ...]:
    """One caption per non-empty line; CaptionUnreadable when the text cannot be decoded."""
    try:
        fd = os.open(path, os.O_RDONLY)  # cheaper than open() for thousands of small files
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError:
        return ()
    text = decode_caption(b"".join(chunks), path.name)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


# -- scanning ---------------------------------------------------------------------------------


def scan_project(project: Project) -> tuple[list[DatasetReport], list[Problem]]:
    """Scan every active (not disabled) image dataset. Returns the reports and all their problems.
    A conditioning dataset is no training set: it is read only as the references of the image
    datasets that name it (conditioning_data)."""
    reports = [
        scan_dataset(project, i)
        for i, d in enumerate(project.datasets)
        if not d.disabled and d.dataset_type != "conditioning"
    ]
    return reports, [p for r in reports for p in r.problems]


def scan_dataset(project: Project, index: int, *, cache: bool = True) -> DatasetReport:
    """Scan one dataset (project.datasets[index]): usable images with their sizes, captions,
    targets and buckets; skipped files with the reason; the problems, size rule included."""
    ds = project.datasets[index]
    if ds.type == "huggingface":
        return _scan_rows(project, index, cache=cache)
    key = f"datasets[{index}]"
    workspace = _workspace(project)
    folder = Path(os.path.abspath(project.resolve(ds.instance_data_dir or ".")))
    report = DatasetReport(index=index, id=str(ds.id), folder=folder)
    shown = _display(folder, workspace)

    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        report.problems.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {shown} {what}",
                f"{key}.instance_data_dir",
                fix=f"create {shown} and put images in it, or set instance_data_dir to your image folder",
            )
        )
        return report

    masks_folder = Path(os.path.abspath(project.resolve(ds.mask_data_dir))) if ds.mask_data_dir else None
    skip_dirs = {os.path.realpath(workspace / sub) for sub in ("cache", "outputs", ".fluxtui")}
    if masks_folder is not None:
        skip_dirs.add(os.path.realpath(masks_folder))
    skip_dirs.discard(os.path.realpath(folder))
    listing = _walk(folder, skip_dirs, want_texts=ds.caption_strategy == "textfile")
    store = _Cache(cache_file(project, str(ds.id)) if cache else None, folder)

    for rel, reason in listing.unreadable:
        report.skipped.append(SkippedFile(folder / rel, reason))
    for rel, reason in listing.unreadable_dirs:
        report.problems.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: folder {rel} cannot be read ({reason})",
                f"{key}.instance_data_dir",
                severity="warning",
                fix="fix its permissions, or move it out of the dataset",
            )
        )

    masks = _mask_index(masks_folder, skip_dirs) if masks_folder is not None and masks_folder.is_dir() else {}
    unmasked = 0
    sized: dict[tuple[int, int], tuple[int, int]] = {}  # (w, h) -> target
    per_image = bool(ds.crop) and ds.crop_aspect == "random"  # the draw depends on the file
    for e in listing.images:
        if e.size == 0:
            report.skipped.append(SkippedFile(e.path, imagesize.ZERO_BYTES))
            continue
        width, height, reason = store.header(e)
        if reason is None and ds.minimum_image_size:
            reason = too_small(width, height, ds)
        if reason:
            report.skipped.append(SkippedFile(e.path, reason))
            continue
        path = e.path
        try:
            captions = _captions(ds, e.stem, listing, store)
        except CaptionUnreadable as exc:  # listed with the reason; trained on, it would be garbage
            report.skipped.append(SkippedFile(e.path, str(exc)))
            continue
        if not captions:
            report.uncaptioned.append(path)
            captions = (_filename_caption(e.stem),)
        if per_image:
            target = target_size(width, height, ds, rng_key=e.rel)
        else:
            target = sized.get((width, height))
            if target is None:
                target = sized[width, height] = target_size(width, height, ds)
        mask = None
        if masks_folder is not None:
            mask = masks.get(e.stem)
            unmasked += mask is None
        report.images.append(ImageInfo(path, width, height, captions, target, mask))
    store.save()
    report.skipped.sort(key=lambda s: s.path)

    buckets: dict[tuple[int, int], list[ImageInfo]] = {}
    for info in report.images:
        buckets.setdefault(info.bucket, []).append(info)
    report.buckets = dict(sorted(buckets.items(), key=lambda kv: (kv[0][0] / kv[0][1], kv[0])))

    report.problems += _file_problems(project, report, listing, shown, masks_folder, unmasked)
    if ds.conditioning_data and ds.dataset_type != "conditioning":
        report.problems += _pair_references(project, report)
    report.problems += _size_rule(project, report)
    return report


def _scan_rows(project: Project, index: int, *, cache: bool = True) -> DatasetReport:
    """scan_dataset for type = "huggingface": the same rules over the rows of a split (sizes
    from width/height columns or the image bytes' headers, captions from caption_column)."""
    from . import hf_datasets  # imports `datasets` only now: local workspaces never load it

    ds = project.datasets[index]
    key = f"datasets[{index}]"
    workspace = _workspace(project)
    report = DatasetReport(index=index, id=str(ds.id), folder=hf_datasets.cache_dir(workspace))
    try:
        rows = hf_datasets.open_rows(workspace, ds, project.resolve)
        report.folder, report.source, report.rows = rows.folder, rows.source, rows
        sizes = hf_datasets.sizes(rows, ds, cache_file(project, str(ds.id)) if cache else None)
        if ds.caption_strategy == "instanceprompt":
            texts = [(ds.instance_prompt,) if ds.instance_prompt else ()] * len(rows)
        else:
            texts = hf_datasets.captions(rows, str(ds.caption_column or "caption"))
    except hf_datasets.LoadProblem as e:
        report.problems.append(problem_at(project, f"dataset `{ds.id}`: {e.message}", f"{key}.{e.key}", fix=e.fix))
        return report

    per_image = bool(ds.crop) and ds.crop_aspect == "random"
    sized: dict[tuple[int, int], tuple[int, int]] = {}
    for row, ((width, height, reason), captions) in enumerate(zip(sizes, texts)):
        name = rows.row_name(row)
        if reason is None and ds.minimum_image_size:
            reason = too_small(width, height, ds)
        if reason:
            report.skipped.append(SkippedFile(name, reason))
            continue
        if not captions:
            report.uncaptioned.append(name)
            captions = ("",)
        if per_image:
            target = target_size(width, height, ds, rng_key=f"row-{row}")
        else:
            target = sized.get((width, height))
            if target is None:
                target = sized[width, height] = target_size(width, height, ds)
        report.images.append(ImageInfo(name, width, height, tuple(captions), target, None, row))

    buckets: dict[tuple[int, int], list[ImageInfo]] = {}
    for info in report.images:
        buckets.setdefault(info.bucket, []).append(info)
    report.buckets = dict(sorted(buckets.items(), key=lambda kv: (kv[0][0] / kv[0][1], kv[0])))
    report.problems += _row_problems(project, report, len(sizes))
    report.problems += _size_rule(project, report)
    return report


def _row_problems(project: Project, report: DatasetReport, found: int) -> list[Problem]:
    ds = project.datasets[report.index]
    key = f"datasets[{report.index}]"
    out = []
    if ds.revision and not report.source.startswith("hub:"):
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: revision {ds.revision!r} is ignored: it picks a branch, tag or commit of a hub "
                f"dataset, and {report.source} is a local folder",
                f"{key}.revision",
                severity="warning",
                fix="remove revision, or set dataset_name to the hub id",
            )
        )
    if found == 0:
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {report.source} has no rows",
                f"{key}.split",
                fix="check dataset_name and split",
            )
        )
        return out
    if report.skipped:
        reasons = Counter(_reason_class(s.reason) for s in report.skipped)
        summary = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        listed = "; ".join(f"{s.path.name}: {s.reason}" for s in report.skipped[:SHOWN])
        more = len(report.skipped) - SHOWN
        if more > 0:
            listed += f"; +{more} more"
        lead = "no usable images" if not report.images else "left out"
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {lead}: {len(report.skipped)} of {found} rows ({summary}): {listed}",
                f"{key}.image_column",
                severity="error" if not report.images else "warning",
                fix="fix or filter out these rows"
                + (" (or lower minimum_image_size)" if "smaller than minimum_image_size" in reasons else ""),
            )
        )
    if report.uncaptioned and ds.caption_strategy == "huggingface":
        names = ", ".join(p.name for p in report.uncaptioned[:SHOWN])
        more = len(report.uncaptioned) - SHOWN
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {len(report.uncaptioned)} of {len(report.images)} rows have an empty "
                f"`{ds.caption_column}` and train with an empty caption: {names}"
                + (f" (+{more} more)" if more > 0 else ""),
                f"{key}.caption_column",
                severity="warning",
                fix="fill in their captions, or set caption_column to another column",
            )
        )
    return out


def _captions(ds: Section, stem: str, listing: _Listing, store: _Cache) -> tuple[str, ...]:
    strategy = ds.caption_strategy
    if strategy == "instanceprompt":
        return (ds.instance_prompt,) if ds.instance_prompt else ()
    if strategy == "textfile":
        entry = listing.texts.get(stem)
        if entry is None or entry.size == 0:
            return ()
        return store.captions_of(entry)
    return (_filename_caption(stem),)


def conditioning_index(project: Project, dataset_id: str) -> int | None:
    """The position of the conditioning dataset called `dataset_id` (None: there is none)."""
    for i, d in enumerate(project.datasets):
        if str(d.id) == dataset_id and d.dataset_type == "conditioning" and not d.disabled:
            return i
    return None


def _pair_references(project: Project, report: DatasetReport) -> list[Problem]:
    """Give each image its same-named reference (relative path without the extension, as
    SimpleTuner pairs them); images without one are left out, counted and listed. A missing
    conditioning dataset is core.rules.conditioning's to report."""
    ds = project.datasets[report.index]
    key = f"datasets[{report.index}].conditioning_data"
    ci = conditioning_index(project, str(ds.conditioning_data))
    if ci is None:
        return []
    cond = project.datasets[ci]
    refs = scan_dataset(project, ci)
    out = [p for p in refs.problems if p.severity == "error" and p.key.endswith("instance_data_dir")]
    by_stem = {str(r.path.relative_to(refs.folder).with_suffix("")): r for r in refs.images}
    paired = []
    for info in report.images:
        ref = by_stem.get(str(info.path.relative_to(report.folder).with_suffix("")))
        if ref is None:
            report.unpaired.append(info.path)
            continue
        strict = cond.conditioning_type == "reference_strict"
        paired.append(
            dataclasses.replace(
                info,
                reference=ref.path,
                reference_size=(ref.width, ref.height),
                reference_target=info.target if strict else ref.target,
            )
        )
    report.images = paired
    report.buckets = {}
    for info in paired:
        report.buckets.setdefault(info.bucket, []).append(info)
    report.buckets = dict(sorted(report.buckets.items(), key=lambda kv: (kv[0][0] / kv[0][1], kv[0])))
    if report.unpaired and refs.images:
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {len(report.unpaired)} of {len(report.unpaired) + len(paired)} images have "
                f"no reference of the same name in `{cond.id}` ({_display(refs.folder, _workspace(project))}) "
                f"and are left out: {_names(report.unpaired, report.folder)}",
                key,
                severity="error" if not paired else "warning",
                fix=f"add <name>.<ext> to {_display(refs.folder, _workspace(project))} for each image, "
                "or move the unpaired images out of the dataset",
            )
        )
    if project.training.train_batch_size > 1 and cond.conditioning_type == "reference_loose":
        for (tw, th), items in report.buckets.items():
            sizes = sorted({i.reference_target for i in items if i.reference_target})
            if len(sizes) > 1:
                out.append(
                    problem_at(
                        project,
                        f"dataset `{ds.id}`, bucket {tw}x{th}: its references train at {len(sizes)} different "
                        f"sizes ({', '.join(f'{w}x{h}' for w, h in sizes[:SHOWN])}), which cannot share a batch "
                        f"of {project.training.train_batch_size}",
                        f"datasets[{ci}].conditioning_type",
                        fix='set conditioning_type = "reference_strict" (references cut like their edits), '
                        "or train_batch_size = 1",
                    )
                )
                break
    return out


def _filename_caption(stem: str) -> str:
    return os.path.basename(stem).replace("_", " ").strip()


def _mask_index(masks_folder: Path, skip_dirs: set[str]) -> dict[str, Path]:
    listing = _walk(masks_folder, skip_dirs - {os.path.realpath(masks_folder)}, want_texts=False)
    index: dict[str, Path] = {}
    for e in listing.images:
        if e.size:
            index.setdefault(e.stem, e.path)
    return index


def _names(paths: list[Path], folder: Path) -> str:
    names = [_display(p, folder) for p in paths[:SHOWN]]
    more = len(paths) - SHOWN
    return ", ".join(names) + (f" (+{more} more)" if more > 0 else "")


def _file_problems(
    project: Project,
    report: DatasetReport,
    listing: _Listing,
    shown: str,
    masks_folder: Path | None,
    unmasked: int,
) -> list[Problem]:
    ds = project.datasets[report.index]
    key = f"datasets[{report.index}]"
    out = []
    found = len(listing.images) + len(listing.unreadable)
    if found == 0:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: no images in {shown} (looked for {exts})",
                f"{key}.instance_data_dir",
                fix=f"put your training images in {shown}, or point instance_data_dir at them",
            )
        )
        return out
    if report.skipped:
        reasons = Counter(_reason_class(s.reason) for s in report.skipped)
        summary = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        listed = "; ".join(f"{_display(s.path, report.folder)}: {s.reason}" for s in report.skipped[:SHOWN])
        more = len(report.skipped) - SHOWN
        if more > 0:
            listed += f"; +{more} more"
        severity = "error" if not report.images else "warning"
        lead = "no usable images" if not report.images else "left out"
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {lead}: {len(report.skipped)} of {found} image files ({summary}): {listed}",
                f"{key}.instance_data_dir",
                severity=severity,
                fix="replace or remove these files"
                + (" (or lower minimum_image_size)" if "smaller than minimum_image_size" in reasons else ""),
            )
        )
    if report.uncaptioned and ds.caption_strategy == "textfile":
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`: {len(report.uncaptioned)} of {len(report.images)} images have no caption "
                f"(.txt missing or empty) and use their file name instead: {_names(report.uncaptioned, report.folder)}",
                f"{key}.caption_strategy",
                severity="warning",
                fix='write a <name>.txt next to each image (one caption per line), or caption_strategy = "filename"',
            )
        )
    if masks_folder is not None:
        mask_shown = _display(masks_folder, _workspace(project))
        if not masks_folder.is_dir():
            out.append(
                problem_at(
                    project,
                    f"dataset `{ds.id}`: mask folder {mask_shown} does not exist",
                    f"{key}.mask_data_dir",
                    fix="create it with one mask per image (same name), or remove mask_data_dir",
                )
            )
        elif unmasked:
            out.append(
                problem_at(
                    project,
                    f"dataset `{ds.id}`: {unmasked} of {len(report.images)} images have no mask in {mask_shown}; "
                    "they train with full loss weight",
                    f"{key}.mask_data_dir",
                    severity="warning",
                    fix="add a mask with the same name as the image (white = full weight)",
                )
            )
    return out


def _reason_class(reason: str) -> str:
    return reason.split(" (", 1)[0].split(":", 1)[0]


def _size_rule(project: Project, report: DatasetReport) -> list[Problem]:
    """Per bucket: images x (repeats + 1) >= batch x accumulation x processes, and the
    batches one process runs per epoch (a short last batch is filled from its bucket)."""
    ds = project.datasets[report.index]
    t = project.training
    processes = process_count(project)
    report.processes = processes
    report.gradient_accumulation_steps = t.gradient_accumulation_steps
    per_step = t.train_batch_size * processes
    needed = per_step * t.gradient_accumulation_steps
    passes = ds.repeats + 1
    report.batches_per_epoch = sum(math.ceil(len(items) * passes / per_step) for items in report.buckets.values())

    short = {a: items for a, items in report.buckets.items() if len(items) * passes < needed}
    if not short:
        return []
    fixes_all = max(math.ceil(needed / len(items)) - 1 for items in short.values())
    auto = " (auto)" if project.hardware.num_processes == "auto" else ""
    why = (
        f"train_batch_size {t.train_batch_size} x gradient_accumulation_steps {t.gradient_accumulation_steps} "
        f"x {processes} process{'es' if processes != 1 else ''}{auto}"
    )
    out = []
    for (tw, th), items in short.items():
        n = len(items)
        fix_repeats = math.ceil(needed / n) - 1
        fix = f"set repeats = {fix_repeats}"
        if len(short) > 1 and fixes_all != fix_repeats:
            fix += f" ({fixes_all} fills every bucket)"
        fix += ", add images of this shape"
        if not (ds.crop and ds.crop_aspect == "square"):
            fix += ', or use crop = true with crop_aspect = "square"'
        out.append(
            problem_at(
                project,
                f"dataset `{ds.id}`, bucket {tw / th:.2f} ({tw}x{th}): {n} image{'s' if n != 1 else ''} x "
                f"(repeats {ds.repeats} + 1) = {n * passes} < {needed} needed per optimizer step ({why})",
                f"datasets[{report.index}].repeats",
                fix=fix,
            )
        )
    return out
