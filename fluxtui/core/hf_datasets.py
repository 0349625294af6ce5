"""[[datasets]] with type = "huggingface": rows of a Hugging Face dataset as training images.

`dataset_name` is a hub id or a local folder: a `datasets` save_to_disk folder (a Dataset or
a DatasetDict of splits) or an imagefolder (images + metadata.jsonl/csv), which both work
offline. A hub dataset is downloaded whole (no streaming: buckets need every size) into
<workspace>/cache/huggingface. SimpleTuner's option names: dataset_name, split, revision,
image_column, caption_column, width_column, height_column.

The `datasets` package is imported here only, and only when such a dataset is scanned or
trained on: a workspace of local folders never loads it. It does not import torch.

Images stay in the dataset's rows: the scan reads their sizes from width/height columns when
there are some, else from the header bytes (core/imagesize.py, no decoding); the trainer
decodes a row's bytes (or the file an imagefolder row points at) when a latent is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import imagesize

SCAN_BATCH = 256  # rows read at a time for their header bytes
SIZE_CACHE_VERSION = 1


class LoadProblem(Exception):
    """The dataset cannot be used: a one-line message, the option to blame and the fix."""

    def __init__(self, message: str, key: str, fix: str):
        super().__init__(message)
        self.message, self.key, self.fix = message, key, fix


def cache_dir(workspace: Path) -> Path:
    """Where hub downloads and imagefolder arrow files go (shared by the workspace's datasets)."""
    return Path(workspace) / "cache" / "huggingface"


@dataclass
class Rows:
    """An opened dataset split, its image column left undecoded."""

    dataset: Any  # datasets.Dataset with image_column cast to Image(decode=False)
    source: str  # what a person reads: the folder, or the hub id (revision, split)
    folder: Path  # the local folder, or the download cache of a hub dataset
    fingerprint: str  # changes when the rows change: latent records carry it
    image_column: str

    def __len__(self) -> int:
        return self.dataset.num_rows

    def columns(self) -> list[str]:
        return list(self.dataset.column_names)

    def column(self, name: str) -> list[Any]:
        return self.dataset.data.column(name).to_pylist()

    def image(self, row: int) -> bytes | Path:
        """The row's image: its bytes, or the file an imagefolder row points at."""
        cell = self.dataset[int(row)][self.image_column]
        return _cell_source(cell, self.folder)

    def iter_images(self) -> Iterator[tuple[int, bytes | Path | None]]:
        """(row, bytes or file) for every row, a batch of rows at a time."""
        only = self.dataset.select_columns([self.image_column])
        row = 0
        for batch in only.iter(batch_size=SCAN_BATCH):
            for cell in batch[self.image_column]:
                yield row, _cell_source(cell, self.folder) if cell else None
                row += 1

    def row_name(self, row: int) -> Path:
        """The name a row goes by in reports and caches: <folder>/row-<n>."""
        return self.folder / f"row-{row}"


def _cell_source(cell: dict | None, folder: Path) -> bytes | Path:
    if not cell:
        return b""
    if cell.get("bytes"):
        return cell["bytes"]
    path = cell.get("path")
    if not path:
        return b""
    p = Path(path)
    return p if p.is_absolute() else folder / p


# -- opening ----------------------------------------------------------------------------------


def _quiet(datasets: Any) -> None:
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def open_rows(workspace: Path, ds: Any, resolve: Any) -> Rows:
    """Load the split that `ds` (a [[datasets]] Section) names; LoadProblem when it cannot be
    (not installed, offline, not found, gated, no such split, no such image column)."""
    try:
        import datasets
    except ImportError:
        raise LoadProblem(
            'type = "huggingface" needs the `datasets` package, which is not installed',
            "type",
            "pip install datasets, or use a local image folder",
        ) from None
    _quiet(datasets)
    name = str(ds.dataset_name or "").strip()
    split = str(ds.split or "train")
    revision = ds.revision or None
    cache = cache_dir(workspace)
    local = Path(resolve(name)) if name else None
    try:
        if local is not None and local.is_dir():
            folder, source = local.resolve(), name
            if (local / "dataset_dict.json").exists() or (local / "state.json").exists():
                loaded = datasets.load_from_disk(str(local))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise _unknown_split(split, list(loaded))
                    loaded = loaded[split]
            else:  # an imagefolder (or csv/json/parquet files): datasets picks the builder
                loaded = datasets.load_dataset(str(local), split=split, cache_dir=str(cache))
        elif name.startswith((".", "/", "~")) or name.count("/") > 1:  # a hub id is user/name
            raise LoadProblem(
                f"dataset_name {name} is not a folder",
                "dataset_name",
                "point dataset_name at a `datasets` save_to_disk folder or an imagefolder, or give a hub id "
                "(user/name)",
            )
        else:
            folder = cache / name.replace("/", "--")
            source = f"hub: {name}" + (f"@{revision}" if revision else "")
            loaded = datasets.load_dataset(name, split=split, revision=revision, cache_dir=str(cache))
    except LoadProblem:
        raise
    except Exception as exc:
        raise _explain(exc, name) from None
    if isinstance(loaded, datasets.DatasetDict):  # a loader that ignored split=
        loaded = loaded[split] if split in loaded else next(iter(loaded.values()))
    return _with_images(datasets, loaded, ds, folder, f"{source} (split {split})")


def _with_images(datasets: Any, loaded: Any, ds: Any, folder: Path, source: str) -> Rows:
    column = str(ds.image_column or "image")
    names = list(loaded.column_names)
    if column not in names:
        raise LoadProblem(
            f"no column `{column}` in {source} (columns: {', '.join(names) or 'none'})",
            "image_column",
            _pick("image_column", names, _image_columns(datasets, loaded)),
        )
    feature = loaded.features[column]
    if not isinstance(feature, datasets.Image):
        raise LoadProblem(
            f"column `{column}` holds {_feature_name(feature)}, not images",
            "image_column",
            _pick("image_column", names, _image_columns(datasets, loaded)),
        )
    fingerprint = str(getattr(loaded, "_fingerprint", "") or "")
    undecoded = loaded.cast_column(column, datasets.Image(decode=False))
    return Rows(undecoded, source, Path(folder), fingerprint, column)


def _image_columns(datasets: Any, loaded: Any) -> list[str]:
    return [n for n, f in loaded.features.items() if isinstance(f, datasets.Image)]


def _feature_name(feature: Any) -> str:
    dtype = getattr(feature, "dtype", None)
    return f"{type(feature).__name__}({dtype})" if dtype else type(feature).__name__


def _pick(key: str, names: list[str], preferred: list[str]) -> str:
    if preferred:
        return f'set {key} = "{preferred[0]}"'
    return f"set {key} to one of: {', '.join(names)}" if names else "check dataset_name"


def _unknown_split(split: str, splits: list[str]) -> LoadProblem:
    return LoadProblem(
        f'no split "{split}" (splits: {", ".join(splits)})',
        "split",
        f'set split = "{splits[0]}"' if splits else "check dataset_name",
    )


def _explain(exc: BaseException, name: str) -> LoadProblem:
    """One line for a failed load: offline, unreachable, not found, gated, bad split."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    kinds = {k.__name__ for k in type(exc).__mro__}
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    page = f"https://huggingface.co/datasets/{name}"
    if "GatedRepoError" in kinds or "gated" in text.lower():
        return LoadProblem(
            f"{name} is gated on the Hugging Face hub: its terms must be accepted first",
            "dataset_name",
            f"accept them on {page}, then `hf auth login` on this machine",
        )
    if "OfflineModeIsEnabled" in text or (offline and "ConnectionError" in kinds):
        return LoadProblem(
            f"cannot load {name} from the Hugging Face hub: offline mode (HF_HUB_OFFLINE=1) and it is not in "
            "cache/huggingface",
            "dataset_name",
            "download it once with HF_HUB_OFFLINE unset, or point dataset_name at a local save_to_disk folder",
        )
    if "ConnectionError" in kinds or "Timeout" in text:
        return LoadProblem(
            f"cannot reach the Hugging Face hub for {name} ({text[:120]})",
            "dataset_name",
            "check the network (or HF_ENDPOINT), or point dataset_name at a local save_to_disk folder",
        )
    if "DatasetNotFoundError" in kinds or "RepositoryNotFoundError" in kinds or "doesn't exist" in text:
        return LoadProblem(
            f"dataset {name} was not found on the Hugging Face hub (or it is private)",
            "dataset_name",
            "check dataset_name's spelling (user/name, or a local folder that exists); for a private dataset, "
            "`hf auth login`",
        )
    if "RevisionNotFoundError" in kinds or "revision" in text.lower():
        return LoadProblem(f"{name}: {text[:160]}", "revision", "use an existing branch, tag or commit, or remove it")
    if text.startswith("Unknown split"):
        return LoadProblem(f"{name}: {text[:200]}", "split", "set split to one of the splits named")
    return LoadProblem(f"cannot load {name}: {type(exc).__name__}: {text[:200]}", "dataset_name", "check dataset_name")


# -- sizes and captions -----------------------------------------------------------------------


def size_columns(rows: Rows, ds: Any) -> tuple[str, str] | None:
    """The width/height columns to trust: the configured ones, else `width` and `height`."""
    names = rows.columns()
    if ds.width_column or ds.height_column:
        return (str(ds.width_column or ""), str(ds.height_column or ""))
    return ("width", "height") if "width" in names and "height" in names else None


def sizes(rows: Rows, ds: Any, cache_path: Path | None) -> list[tuple[int, int, str | None]]:
    """(width, height, reason the row is unusable or None) per row: from the size columns, else
    the header bytes. Header results are kept in cache_path, keyed by the rows' fingerprint."""
    columns = size_columns(rows, ds)
    if columns is not None:
        for key, col in zip(("width_column", "height_column"), columns):
            if col not in rows.columns():
                raise LoadProblem(
                    f"no column `{col or '(empty)'}` (columns: {', '.join(rows.columns())})",
                    key,
                    "set width_column and height_column to the size columns, or remove both to read image headers",
                )
        widths, heights = rows.column(columns[0]), rows.column(columns[1])
        out = []
        for w, h in zip(widths, heights):
            try:
                wi, hi = int(w), int(h)
            except (TypeError, ValueError):
                out.append((0, 0, f"no size in {columns[0]}/{columns[1]} ({w!r} x {h!r})"))
                continue
            out.append((wi, hi, None) if wi > 0 and hi > 0 else (0, 0, f"size {wi}x{hi} in the size columns"))
        return out
    key = f"{rows.fingerprint}:{rows.image_column}"
    if cache_path is not None and rows.fingerprint:
        try:
            data = json.loads(cache_path.read_text(encoding="utf-8"))
            if data.get("version") == SIZE_CACHE_VERSION and data.get("rows") == key:
                cached = [(int(w), int(h), r) for w, h, r in data["sizes"]]
                if len(cached) == len(rows):
                    return cached
        except (OSError, ValueError, KeyError, TypeError):
            pass
    out = []
    for _, src in rows.iter_images():
        out.append(_header(src))
    if cache_path is not None and rows.fingerprint:
        from .config import atomic_write_text

        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"version": SIZE_CACHE_VERSION, "rows": key, "sizes": [list(s) for s in out]}
            atomic_write_text(cache_path, json.dumps(payload, separators=(",", ":")))
        except OSError:
            pass  # a read-only workspace reads the headers every time
    return out


def _header(src: bytes | Path | None) -> tuple[int, int, str | None]:
    if src is None or src == b"":
        return 0, 0, "no image in this row"
    if isinstance(src, Path):
        try:
            h = imagesize.read_header(src)
        except OSError as e:
            return 0, 0, f"cannot read {src.name}: {e.strerror or e}"
    else:
        h = imagesize.read_header_bytes(src)
    return h.width, h.height, h.reason


def captions(rows: Rows, column: str) -> list[tuple[str, ...]]:
    """Each row's captions from caption_column: a string is one caption, a list several."""
    if column not in rows.columns():
        raise LoadProblem(
            f"no column `{column}` (columns: {', '.join(rows.columns())})",
            "caption_column",
            _pick("caption_column", rows.columns(), _text_columns(rows)),
        )
    out = []
    for value in rows.column(column):
        if isinstance(value, (list, tuple)):
            out.append(tuple(str(v).strip() for v in value if v is not None and str(v).strip()))
        elif value is None or not str(value).strip():
            out.append(())
        else:
            out.append((str(value).strip(),))
    return out


def _text_columns(rows: Rows) -> list[str]:
    import datasets

    return [
        n
        for n, f in rows.dataset.features.items()
        if isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")
    ]
