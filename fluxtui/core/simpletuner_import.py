"""Read a SimpleTuner config (config.json / config.toml / config.env, its multidatabackend.json,
lycoris_config.json and user_prompt_library.json) into fluxtui settings, with one row per
source key saying what became of it: set, converted, dropped (why) or not supported (why).

`plan()` only reads; `write()` makes the workspace. No torch: the CLI and tests use it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from . import lycoris_config
from .config import PROJECT_FILE, atomic_write_text, check_value
from .schema import BY_DOTTED, FLAVOURS, options_in
from .simpletuner_names import (
    CONDITIONING_KEYS,
    DATASET_KEYS,
    DATASET_TYPE_DROPPED,
    ENV_DROPPED,
    ENV_NAMES,
    ConvertError,
    Name,
    config_name,
    convert,
)

CONFIG_FILES = ("config.json", "config.toml", "config.env")
FATES = ("set", "converted", "dropped", "unsupported", "unknown")
LOST = ("unknown",)  # a key that ends here was lost silently: import exits 1
MODEL_FAMILY = "flux"  # what SimpleTuner's {model_family} is for every fluxtui project
LYCORIS_FILE = "lycoris_config.json"


PRECISION_KEYS = ("base_model_precision", "text_encoder_1_precision", "text_encoder_2_precision")
# SimpleTuner's quickstart also writes these; they mean fluxtui's names.
PRECISION_ALIASES = {"bf16": "no_change", "bnb-nf4": "nf4-bnb"}


class ImportProblem(Exception):
    """Bad input: a missing file, broken JSON... The message names the file (and line)."""


@dataclass
class Row:
    source: str  # "learning_rate", "TRAINER_EXTRA_ARGS --lora_rank", "multidatabackend.json[0].crop"
    fate: str  # one of FATES
    target: str | None = None  # the fluxtui option (dotted)
    value: Any = None  # the value fluxtui got
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "fate": self.fate, "target": self.target, "value": self.value, "note": self.note}


@dataclass
class Plan:
    source: Path  # the config file read
    workdir: Path  # SimpleTuner's working directory (paths in the config are relative to it)
    settings: dict[str, Any] = field(default_factory=dict)  # dotted -> value
    datasets: list[dict[str, Any]] = field(default_factory=list)
    copies: dict[str, Path] = field(default_factory=dict)  # workspace-relative name -> source file
    dataset_dirs: dict[str, Path] = field(default_factory=dict)  # dataset id -> its image folder
    rows: list[Row] = field(default_factory=list)
    copy_datasets: bool = False
    lycoris: bytes | None = None  # the lycoris_config file's content; written under a free name

    @property
    def lost(self) -> list[Row]:
        return [r for r in self.rows if r.fate in LOST]

    def to_json(self) -> dict[str, Any]:
        counts = {f: sum(r.fate == f for r in self.rows) for f in FATES}
        return {"source": str(self.source), "counts": counts, "rows": [r.to_json() for r in self.rows]}


# -- finding and reading the source ---------------------------------------------------------


def find_config(source: Path) -> tuple[Path, Path]:
    """(config file, SimpleTuner working directory) for a folder or a file."""
    source = Path(source).expanduser()
    if not source.exists():
        raise ImportProblem(f"{source} does not exist (give a SimpleTuner folder or its config.json/.toml/.env)")
    if source.is_dir():
        for folder in (source / "config", source):
            for name in CONFIG_FILES:
                if (folder / name).is_file():
                    return _with_workdir(folder / name)
        raise ImportProblem(
            f"no {', '.join(CONFIG_FILES)} in {source} or {source / 'config'}; give the config file itself"
        )
    return _with_workdir(source)


def _with_workdir(config: Path) -> tuple[Path, Path]:
    folder = config.resolve().parent
    # SimpleTuner runs from the folder above config/ and writes paths relative to it.
    return config, folder.parent if folder.name == "config" else folder


def read_config(path: Path) -> list[tuple[str, str, Any]]:
    """(label, SimpleTuner option name, raw value) for every entry of the file."""
    if path.suffix == ".env" or path.name.endswith(".env"):
        return _read_env(path)
    text = _read_text(path)
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ImportProblem(f"{path}: invalid TOML: {e}") from e
    else:
        data = _json(path, text)
    if not isinstance(data, dict):
        raise ImportProblem(f"{path}: expected a JSON object of option: value, got {type(data).__name__}")
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and path.suffix == ".toml" and not key.startswith("-"):
            out.extend((f"{key}.{k}", k, v) for k, v in value.items())  # a [table] of options
        else:
            out.append((key, key, value))
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ImportProblem(f"{path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ImportProblem(f"cannot read {path}: {e}") from e


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        # SimpleTuner's own examples carry trailing commas; forgive those, nothing else.
        try:
            return json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except json.JSONDecodeError:
            raise ImportProblem(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e


def _read_env(path: Path) -> list[tuple[str, str, Any]]:
    values: dict[str, str] = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        append = "+=" in line.split("=", 1)[0] + "="
        if "=" not in line:
            raise ImportProblem(f"{path}:{n}: expected NAME=value, got {line!r}")
        key, value = line.split("+=", 1) if append else line.split("=", 1)
        key, value = key.strip(), value.strip()
        try:
            value = " ".join(shlex.split(value)) if value else ""
        except ValueError as e:
            raise ImportProblem(f"{path}:{n}: {e} in {key}") from e
        values[key] = f"{values[key]} {value}".strip() if append and key in values else value
    out: list[tuple[str, str, Any]] = []
    for key, value in values.items():
        if key == "TRAINER_EXTRA_ARGS":
            out.extend(_extra_args(path, value))
        elif key in ENV_NAMES:
            out.append((f"{key} ({ENV_NAMES[key]})", ENV_NAMES[key], value))
        elif key in ENV_DROPPED:
            out.append((key, f"env:{key}", value))
        else:
            out.append((key, f"env:{key}", value))
    return out


def _extra_args(path: Path, text: str) -> list[tuple[str, str, Any]]:
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ImportProblem(f"{path}: TRAINER_EXTRA_ARGS: {e}") from e
    out, i = [], 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise ImportProblem(f"{path}: TRAINER_EXTRA_ARGS: expected --key=value, got {word!r}")
        if "=" in word:
            key, value = word[2:].split("=", 1)
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            key, value = word[2:], words[i + 1]
            i += 1
        else:
            key, value = word[2:], True  # a bare flag
        out.append((f"TRAINER_EXTRA_ARGS --{key}", key, value))
        i += 1
    return out


# -- planning -----------------------------------------------------------------------------


def plan(source: str | Path, *, copy_datasets: bool = False) -> Plan:
    config_file, workdir = find_config(Path(source))
    p = Plan(source=config_file, workdir=workdir, copy_datasets=copy_datasets)
    defaults: dict[str, tuple[str, Any]] = {}  # dataset key -> (source label, value)
    followed: dict[str, tuple[str, Any]] = {}
    for label, key, raw in read_config(config_file):
        _plan_key(p, label, key, raw, defaults, followed)
    if "lycoris_config" in followed:
        _plan_lycoris(p, *followed["lycoris_config"])
    if "data_backend_config" in followed:
        _plan_datasets(p, *followed["data_backend_config"], defaults, copy_datasets)
    else:
        for label, _ in defaults.values():
            _row_for(p, label).note = "copied into each dataset: there is no data_backend_config to apply it to"
    _guess_flavour(p)
    return p


def _row_for(p: Plan, label: str) -> Row:
    return next(r for r in p.rows if r.source == label)


def _plan_key(p: Plan, label: str, key: str, raw: Any, defaults: dict, followed: dict) -> None:
    if key.startswith("env:"):
        env = key[4:]
        if env in ENV_DROPPED:
            p.rows.append(Row(label, "dropped", note=ENV_DROPPED[env]))
        else:
            p.rows.append(Row(label, "unknown", note="not a variable SimpleTuner's config.env maps to an option"))
        return
    bare = key.lstrip("-")
    stripped = bare != key
    name = config_name(bare)
    if name is None:
        p.rows.append(Row(label, "unknown", note="not a SimpleTuner option fluxtui knows"))
        return
    if bare in ("data_backend_config", "lycoris_config"):
        followed[bare] = (label, raw)
        p.rows.append(Row(label, "converted", value=raw, note=name.dropped or ""))
        return
    if name.target is None:
        p.rows.append(_fixed_value_row(label, name, raw))
        return
    opt = BY_DOTTED[name.target]
    if opt.key in PRECISION_KEYS and isinstance(raw, str) and raw in PRECISION_ALIASES:
        raw = PRECISION_ALIASES[raw]
        stripped = True  # reported as converted
    checked = _read_value(p, label, opt, name.target, raw, raw)
    if checked is _REFUSED:
        return
    changed = stripped or not _same(checked, raw)
    note = "`--` stripped" if bare != key else ""
    if name.target.startswith("datasets."):
        defaults[opt.key] = (label, checked)
        p.rows.append(
            Row(label, "converted", name.target, checked, "copied into each dataset that does not set its own")
        )
        return
    if name.target == "validation.user_prompt_library":
        checked = _copy_json(p, label, checked, "user_prompt_library.json")
        if checked is None:
            return
        changed, note = True, "the file is copied into the workspace"
    p.settings[name.target] = checked
    p.rows.append(Row(label, "converted" if changed else "set", name.target, checked, note))


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (isinstance(a, float) and isinstance(b, int) and a == b)


def _fixed_value_row(label: str, name: Name, raw: Any) -> Row:
    if name.dropped_if is None:
        if name.unsupported:
            return Row(label, "unsupported", value=raw, note=name.unsupported)
        return Row(label, "dropped", value=raw, note=name.dropped)
    value = raw
    if isinstance(name.dropped_if, bool):
        try:
            value = convert(BY_DOTTED["hub.push_to_hub"], raw)  # any bool option reads the same
        except ConvertError:
            pass
    if value == name.dropped_if or (isinstance(value, str) and value.lower() == str(name.dropped_if).lower()):
        return Row(label, "dropped", value=raw, note=name.dropped)
    return Row(label, "unsupported", value=raw, note=name.unsupported)


def _locate(p: Plan, value: str) -> Path | None:
    """A path from the config: absolute, else relative to SimpleTuner's working directory, else
    to the config's folder."""
    path = Path(str(value)).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in (p.workdir, p.source.resolve().parent):
        if (base / path).exists():
            return (base / path).resolve()
    return None


def _followed_json(p: Plan, label: str, value: Any) -> tuple[Path, Any]:
    """A file the config names (relative to SimpleTuner's folder or the config's), parsed:
    missing or broken JSON is bad input now, not at the first run."""
    found = _locate(p, value)
    if found is None:
        raise ImportProblem(f"{label} = {value!r}: no such file in {p.workdir} or {p.source.parent}")
    return found, _json(found, _read_text(found))


def _copy_json(p: Plan, label: str, value: str, dest: str) -> str | None:
    found, _ = _followed_json(p, label, value)
    p.copies[dest] = found
    return dest


def _plan_lycoris(p: Plan, label: str, value: Any) -> None:
    """SimpleTuner's LyCORIS file becomes [lora] lycoris_config: fluxtui hands it to lycoris the
    same way. Keys fluxtui's check refuses are left out of the copy, each row saying why."""
    data, found = value, None
    if not isinstance(value, dict):
        found, data = _followed_json(p, label, value)
    if not isinstance(data, dict):
        raise ImportProblem(f"{label}: a lycoris config must be a JSON object")
    missing = lycoris_config.problems({k: data[k] for k in lycoris_config.REQUIRED if k in data})
    if missing:  # SimpleTuner refuses such a file too
        raise ImportProblem(f"{found or label}: {missing[0][0]} ({missing[0][1]})")
    p.settings["lora.lora_type"] = "lycoris"
    if _short_form(p, data):
        return
    preset, renamed = lycoris_config.rename_classes(data.get("apply_preset"), lycoris_config.SIMPLETUNER_TO_DIFFUSERS)
    kept: dict[str, Any] = {}
    prefix = "lycoris_config."
    for key, raw in data.items():
        checked = preset if key == "apply_preset" else raw
        refused = lycoris_config.problems({**_REQUIRED_STAND_INS, key: checked})
        if refused:
            note = "; ".join(f"{m} ({f})" for m, f in refused)
            p.rows.append(Row(prefix + key, "unsupported", value=raw, note=f"{note}: left out of the copy"))
            continue
        kept[key] = checked
        row = Row(prefix + key, "set", "lora.lycoris_config", checked, "kept in the copied file")
        if key == "apply_preset" and renamed:
            row.fate = "converted"
            row.note = "SimpleTuner's Flux attention class Attention is diffusers' FluxAttention here"
        p.rows.append(row)
    # A file SimpleTuner's loose JSON reading accepts (trailing commas) is written out clean.
    same = found is not None and kept == data and not renamed and _strict_json(found)
    p.lycoris = found.read_bytes() if same else (json.dumps(kept, indent=4) + "\n").encode()
    p.settings["lora.lycoris_config"] = LYCORIS_FILE
    row = _row_for(p, label)
    row.target, row.value = "lora.lycoris_config", LYCORIS_FILE
    row.note = "copied into the workspace" + ("" if same else ", less the keys refused below" if kept != data else "")
    for r in p.rows:
        if r.target in ("lora.lora_rank", "lora.lora_alpha") and r.fate in ("set", "converted"):
            r.note = "unused beside lycoris_config (its linear_dim/linear_alpha), as in SimpleTuner"


def _short_form(p: Plan, data: dict[str, Any]) -> bool:
    """A file holding only what fluxtui's LoKr without a lycoris_config is (algo lokr, factor,
    linear_dim, linear_alpha) imports as lokr_factor, lora_rank and lora_alpha: the trainer builds
    the same network from them, and a fluxtui export comes back as it left."""
    if set(data) - {"algo", "multiplier", "linear_dim", "linear_alpha", "factor"} or data.get("algo") != "lokr":
        return False
    if data.get("multiplier", 1.0) != 1.0:
        return False
    values: dict[str, Any] = {}
    for key, target in (
        ("factor", "lora.lokr_factor"),
        ("linear_dim", "lora.lora_rank"),
        ("linear_alpha", "lora.lora_alpha"),
    ):
        if key not in data:
            continue
        opt = BY_DOTTED[target]
        try:
            checked, err = check_value(opt, convert(opt, data[key]))
        except ConvertError:
            return False
        if err:
            return False  # e.g. a full-matrix linear_dim: the file is kept as lycoris_config
        values[target] = checked
    prefix = "lycoris_config."
    for key, raw in data.items():
        if key == "algo":
            p.rows.append(Row(prefix + key, "converted", "lora.lora_type", "lycoris", 'lora_type = "lycoris" is LoKr'))
        elif key == "multiplier":
            p.rows.append(Row(prefix + key, "dropped", value=raw, note="1.0, as fluxtui trains"))
        else:
            target = {"factor": "lora.lokr_factor", "linear_dim": "lora.lora_rank", "linear_alpha": "lora.lora_alpha"}[
                key
            ]
            if key == "linear_alpha" and values[target] == values.get("lora.lora_rank"):
                del values[target]  # fluxtui's unset lora_alpha is the rank
                p.rows.append(Row(prefix + key, "converted", target, None, "equal to linear_dim: lora_alpha unset"))
            else:
                p.rows.append(Row(prefix + key, "converted", target, values[target]))
            # SimpleTuner ignores lora_rank/lora_alpha for LyCORIS: the file's values are the ones used.
            for r in p.rows:
                if r.target == target and r.fate in ("set", "converted") and not r.source.startswith(prefix):
                    r.fate, r.note = "dropped", f"SimpleTuner uses {prefix}{key} for LyCORIS, not this"
                    p.settings.pop(target, None)
    p.settings.update(values)
    return True


# lycoris requires these two; they stand in while one other key is checked on its own.
_REQUIRED_STAND_INS = {"linear_dim": 1, "linear_alpha": 1}


def _strict_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def _plan_datasets(p: Plan, label: str, value: Any, defaults: dict, copy_datasets: bool) -> None:
    found, entries = _followed_json(p, label, value)
    if not isinstance(entries, list):
        raise ImportProblem(f"{found}: a multidatabackend file is a JSON list of dataset entries")
    fname = found.name
    text_cache_set = False
    ds_opts = {o.key: o for o in options_in("datasets")}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ImportProblem(f"{found}: entry {i} is not a JSON object")
        prefix = f"{fname}[{i}]"
        kind = entry.get("dataset_type", "image")
        if isinstance(kind, str) and kind in DATASET_TYPE_DROPPED:
            for key, raw in entry.items():
                row = Row(f"{prefix}.{key}", "dropped", value=raw, note=DATASET_TYPE_DROPPED[kind])
                if kind == "text_embeds" and key in ("cache_dir", "write_batch_size") and not text_cache_set:
                    target = "text_embeds.cache_dir" if key == "cache_dir" else "text_embeds.write_batch_size"
                    opt = BY_DOTTED[target]
                    try:
                        v = convert(opt, _expand(raw))
                    except ConvertError as e:
                        row.fate, row.note = "unknown", f"cannot be read: {e}"
                    else:
                        row.fate, row.target, row.value = "converted" if v != raw else "set", target, v
                        row.note = "{model_family} expanded" if "{model_family}" in str(raw) else ""
                        p.settings[target] = v
                p.rows.append(row)
            if kind == "text_embeds" and ("cache_dir" in entry):
                text_cache_set = True
            continue
        if kind not in ("image", "conditioning"):
            for key, raw in entry.items():
                p.rows.append(
                    Row(
                        f"{prefix}.{key}",
                        "unsupported",
                        value=raw,
                        note=f"fluxtui trains images; dataset_type {kind!r} is not",
                    )
                )
            continue
        ds: dict[str, Any] = {}
        for key, raw in entry.items():
            src = f"{prefix}.{key}"
            if key in CONDITIONING_KEYS:
                if key == "dataset_type" and raw == "image":
                    p.rows.append(
                        Row(src, "dropped", value=raw, note="an image dataset is what a [[datasets]] table is")
                    )
                    continue
                ds[key] = raw
                p.rows.append(Row(src, "set", f"datasets.{key}", raw, "kontext reference pairing"))
                continue
            if key == "huggingface" and isinstance(raw, dict):
                ds[key] = raw
                p.rows.append(Row(src, "set", "datasets.huggingface", raw, "read as the table's own keys"))
                continue
            name = DATASET_KEYS.get(key)
            if name is None:
                p.rows.append(Row(src, "unknown", value=raw, note="not a SimpleTuner dataset key fluxtui knows"))
                continue
            if key == "only_instance_prompt":
                if raw in (True, "true"):
                    ds["caption_strategy"] = "instanceprompt"
                    p.rows.append(Row(src, "converted", "datasets.caption_strategy", "instanceprompt"))
                else:
                    p.rows.append(Row(src, "dropped", value=raw, note="off: captions are used"))
                continue
            if name.target is None:
                p.rows.append(_fixed_value_row(src, name, raw))
                continue
            opt = ds_opts[name.target.split(".", 1)[1]]
            if key == "type" and raw not in opt.choices:
                p.rows.append(
                    Row(
                        src, "unsupported", value=raw, note="fluxtui reads local folders and Hugging Face datasets only"
                    )
                )
                continue
            checked = _read_value(p, src, opt, name.target, raw, _expand(raw) if opt.kind == "path" else raw)
            if checked is _REFUSED:
                continue
            note = "{model_family} expanded" if "{model_family}" in str(raw) else ""
            if key == "instance_data_dir":
                folder = _locate(p, checked)
                if folder is None:
                    folder = (p.workdir / checked).resolve()
                    note = f"not found at {folder}: check it"
                p.dataset_dirs[str(entry.get("id", i))] = folder
                checked = str(folder)
                if copy_datasets:
                    checked = f"datasets/{entry.get('id', i)}"
                    note = (note + "; " if note else "") + "copied into the workspace"
            ds[opt.key] = checked
            fate = "set" if _same(checked, raw) and opt.key == key else "converted"
            p.rows.append(Row(src, fate, f"datasets.{opt.key}", checked, note))
        for key, (_src, value) in defaults.items():
            ds.setdefault(key, value)
        p.datasets.append(ds)
    _mark_references(p, fname)


def _mark_references(p: Plan, fname: str) -> None:
    """SimpleTuner's Kontext quickstart leaves dataset_type out of the reference set: naming it in
    an image set's conditioning_data is what makes it one. fluxtui says so in the table."""
    named = {str(d["conditioning_data"]) for d in p.datasets if isinstance(d.get("conditioning_data"), str)}
    named |= {
        str(x) for d in p.datasets if isinstance(d.get("conditioning_data"), list) for x in d["conditioning_data"]
    }
    for ds in p.datasets:
        if str(ds.get("id")) not in named or "dataset_type" in ds:
            continue
        ds["dataset_type"] = "conditioning"
        row = next(
            (
                r
                for r in p.rows
                if r.source.startswith(f"{fname}[") and r.source.endswith("].id") and str(r.value) == str(ds["id"])
            ),
            None,
        )
        if row is not None:
            note = 'dataset_type = "conditioning" added: another dataset names it in conditioning_data'
            row.note = f"{row.note}; {note}" if row.note else note


def _expand(value: Any) -> Any:
    return value.replace("{model_family}", MODEL_FAMILY) if isinstance(value, str) else value


def _guess_flavour(p: Plan) -> None:
    """Without model_flavour both trainers default to krea; a known repo path names the flavour
    (fluxtui's flavour also sets guidance, schedule and masking defaults)."""
    if "model.model_flavour" in p.settings:
        return
    repo = p.settings.get("model.pretrained_model_name_or_path")
    for flavour, hub in FLAVOURS.items():
        if hub and isinstance(repo, str) and repo.lower() == hub.lower():  # hub ids ignore case
            p.settings["model.model_flavour"] = flavour
            return


# -- writing the workspace ------------------------------------------------------------------


class WorkspaceTaken(Exception):
    pass


def default_dir(config_file: Path, cwd: Path) -> Path:
    """A new folder named after the config: its folder's name (the one above config/)."""
    folder = config_file.resolve().parent
    if folder.name == "config":
        folder = folder.parent
    base = cwd / folder.name
    if base.exists():
        base = cwd / f"{folder.name}-fluxtui"
    return base


def write(p: Plan, dest: Path, *, force: bool = False) -> Path:
    """Make `dest` a workspace holding the imported project; returns its project.toml."""
    import tomlkit

    from .generate import template_text

    dest = Path(dest).expanduser().resolve()
    project_file = dest / PROJECT_FILE
    if project_file.is_dir():
        raise WorkspaceTaken(f"{project_file} is a folder; fluxtui never replaces it")
    if project_file.exists() and not force:
        raise WorkspaceTaken(f"{project_file} already exists; add --force to replace it (only project.toml)")
    taken = [name for name, src in p.copies.items() if (dest / name).exists() and not _same_file(dest / name, src)]
    if taken and not force:
        raise WorkspaceTaken(f"{', '.join(str(dest / t) for t in taken)} already exist(s); add --force to replace")
    if p.dataset_dirs and p.copy_datasets:
        busy = [d["instance_data_dir"] for d in p.datasets if (dest / d.get("instance_data_dir", "")).exists()]
        if busy and not force:
            raise WorkspaceTaken(f"{dest / busy[0]} already exists; add --force to copy into it")
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("datasets", "cache", "outputs"):
        (dest / sub).mkdir(exist_ok=True)
    for name, src in p.copies.items():
        if not _same_file(dest / name, src):
            shutil.copyfile(src, dest / name)
    if p.copy_datasets:
        for ds in p.datasets:
            folder = p.dataset_dirs.get(str(ds.get("id")))
            if folder is not None and folder.is_dir():
                shutil.copytree(folder, dest / ds["instance_data_dir"], dirs_exist_ok=True)

    if p.lycoris is not None:
        _write_lycoris(p, dest)
    doc = tomlkit.parse(template_text())
    settings = dict(p.settings)
    settings.setdefault("project.name", dest.name)
    for dotted, value in settings.items():
        section, key = dotted.rsplit(".", 1)
        doc[section][key] = value
    if p.datasets:
        tables = doc["datasets"]
        first = tables[0]
        for i, ds in enumerate(p.datasets):
            ds = {k: _relative(dest, v) if k == "instance_data_dir" else v for k, v in ds.items()}
            if i == 0:
                for key in ("instance_data_dir", "caption_strategy"):
                    # the template's values are a local folder's; a hub dataset has its own defaults
                    if key not in ds and (key == "instance_data_dir" or ds.get("type") == "huggingface"):
                        del first[key]
                for k, v in ds.items():
                    first[k] = v
            else:
                table = tomlkit.table()
                for k, v in ds.items():
                    table[k] = v
                tables.append(table)
    else:
        (dest / "datasets" / "my-images").mkdir(exist_ok=True)
    text = header(p) + tomlkit.dumps(doc)
    if project_file.exists():  # --force: the old file stays next to the new one
        shutil.copyfile(project_file, dest / f"{PROJECT_FILE}.before-import")
    atomic_write_text(project_file, text)
    return project_file


def _write_lycoris(p: Plan, dest: Path) -> None:
    """The LyCORIS file under lycoris_config.json, or the first free lycoris_config-N.json when
    another file has that name: a user's file is never replaced, an identical one is kept."""
    assert p.lycoris is not None
    stem, n = Path(LYCORIS_FILE).stem, 1
    name = LYCORIS_FILE
    while (dest / name).exists() and not ((dest / name).is_file() and (dest / name).read_bytes() == p.lycoris):
        n += 1
        name = f"{stem}-{n}.json"
    if not (dest / name).exists():
        atomic_write_text(dest / name, p.lycoris.decode("utf-8"))
    p.settings["lora.lycoris_config"] = name
    for r in p.rows:
        if r.target == "lora.lycoris_config" and r.value == LYCORIS_FILE:
            r.value = name


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _relative(root: Path, value: str) -> str:
    path = Path(value)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return value


def header(p: Plan) -> str:
    """The import table as a comment block for the top of project.toml."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# Imported from SimpleTuner: {p.source.resolve()} ({when}).", "# What became of each key:"]
    for r in p.rows:
        where = f" -> {r.target}" if r.target else ""
        note = f" ({r.note})" if r.note else ""
        lines.append(f"#   {r.source}: {r.fate}{where}{note}".replace("\n", " "))
    return "\n".join(lines) + "\n\n"


_REFUSED = object()


def _read_value(p, label: str, opt, target: str, raw, text):
    """The option's value from `text`, or _REFUSED after recording why (unreadable, empty, out of
    range): every source value goes through the same converter and range check."""
    try:
        value = convert(opt, text)
    except ConvertError as e:
        p.rows.append(Row(label, "unknown", target, raw, f"cannot be read: {e}"))
        return _REFUSED
    if value is None:
        p.rows.append(Row(label, "dropped", target, None, "empty: fluxtui's default applies"))
        return _REFUSED
    checked, err = check_value(opt, value)
    if err:
        p.rows.append(Row(label, "unknown", target, raw, f"{err[0]} ({err[1]})"))
        return _REFUSED
    return checked
