"""Read project.toml into a typed Project; write edits that keep comments and layout.

Reading uses tomllib (fast, strict). Edits go through tomlkit so that everything except the
edited value survives byte for byte, and every write is a temp file renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from .problems import ConfigError, Problem
from .schema import (
    CONDITIONING_TYPES_REFUSED,
    DATASET_TYPES,
    HUGGINGFACE_KEYS,
    OPTIONS,
    SECTIONS,
    Option,
    options_in,
    table_sections,
)

PROJECT_FILE = "project.toml"


class Section(SimpleNamespace):
    """Attribute access to one section's values: project.training.learning_rate."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Project:
    """A checked project.toml: every option present, defaults filled in."""

    path: Path
    sections: dict[str, Section]
    datasets: list[Section]
    explicit: set[str] = field(default_factory=set)  # dotted keys written in the file
    text: str = ""

    def __getattr__(self, name: str) -> Section:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    @property
    def workspace(self) -> Path:
        return self.path.parent

    def get(self, dotted: str) -> Any:
        m = re.fullmatch(r"datasets\[(\d+)\]\.(\w+)", dotted)
        if m:
            return getattr(self.datasets[int(m[1])], m[2])
        section, key = dotted.rsplit(".", 1)
        return getattr(self.sections[section], key)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: s.as_dict() for name, s in self.sections.items()}
        out["datasets"] = [d.as_dict() for d in self.datasets]
        return out

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path from the config: relative ones are relative to the workspace."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.workspace / p

    @property
    def active_datasets(self) -> list[Section]:
        return [d for d in self.datasets if not d.disabled]


# -- reading ------------------------------------------------------------------------------

_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def load(path: str | os.PathLike) -> tuple[Project | None, list[Problem]]:
    """Read and check a project file. Returns (project or None on errors, problems)."""
    path = Path(path)
    if path.is_dir() and path.name != PROJECT_FILE:
        path = path / PROJECT_FILE
    name = path.name
    if path.is_dir():
        return None, [
            Problem(
                f"{path} is a folder, not a file",
                fix="rename that folder; a workspace needs project.toml as a file (`fluxtui init DIR` writes one)",
                file=name,
            )
        ]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(f"{path} does not exist", fix="run `fluxtui init DIR` first", file=name)]
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem(f"cannot read {path}: {e}", file=name)]
    return parse(text, path)


def parse(text: str, path: Path) -> tuple[Project | None, list[Problem]]:
    name = path.name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        line = int(m[1]) if m else None
        msg = _TOML_POS.sub("", msg).strip()
        if m:
            msg += f" (column {m[2]})"
        return None, [Problem(f"invalid TOML: {msg}", file=name, line=line, fix="correct the syntax")]
    return _check(doc, text, path)


def _check(doc: dict, text: str, path: Path) -> tuple[Project | None, list[Problem]]:
    lines = KeyLocator(text)
    problems: list[Problem] = []
    explicit: set[str] = set()

    def problem(msg: str, key: str, fix: str | None = None, *, line_key: str | None = None) -> None:
        problems.append(Problem(msg, key=key, file=path.name, line=lines.line_of(line_key or key), fix=fix))

    known_tables = set(table_sections()) | {"datasets"}
    for top, value in doc.items():
        if top not in known_tables:
            msg, fix = _unknown(top, f"unknown section or key `{top}`", known_tables | _all_keys(), "remove it")
            problem(msg, top, fix)
        elif top != "datasets" and not isinstance(value, dict):
            problem(f"`{top}` must be a table ([{top}])", top)

    sections: dict[str, Section] = {}
    for sec in table_sections():
        raw = doc.get(sec, {})
        if not isinstance(raw, dict):
            raw = {}
        values = {}
        known = {o.key: o for o in options_in(sec)}
        for key in raw:
            if key not in known:
                msg, fix = _unknown(
                    key,
                    f"unknown option `{key}` in [{sec}]",
                    set(known),
                    "remove it; `fluxtui validate` lists every option in docs/options.md",
                    section=sec,
                )
                problem(msg, f"{sec}.{key}", fix)
        for opt in known.values():
            if opt.key in raw:
                explicit.add(opt.dotted)
                value, err = check_value(opt, raw[opt.key])
                if err:
                    problem(err[0], opt.dotted, err[1])
                    value = opt.default
            else:
                value = _copy(opt.default)
            values[opt.key] = value
        sections[sec] = Section(**values)

    datasets: list[Section] = []
    raw_sets = doc.get("datasets", [])
    if not isinstance(raw_sets, list):
        problem("`datasets` must be an array of tables ([[datasets]])", "datasets")
        raw_sets = []
    ds_opts = {o.key: o for o in options_in("datasets")}
    seen_ids: dict[str, int] = {}
    for i, raw in enumerate(raw_sets):
        prefix = f"datasets[{i}]"
        if not isinstance(raw, dict):
            problem("each dataset must be a table", prefix)
            continue
        values = {}
        raw = _merge_huggingface_table(raw, prefix, problem)
        for key in raw:
            if key not in ds_opts:
                msg, fix = _unknown(
                    key, f"unknown dataset option `{key}`", set(ds_opts), "remove it", section="datasets"
                )
                problem(msg, f"{prefix}.{key}", fix)
        ds_type = raw.get("type", "local") if raw.get("type") in DATASET_TYPES else "local"
        for opt in ds_opts.values():
            dotted = f"{prefix}.{opt.key}"
            if opt.key in raw:
                explicit.add(dotted)
                value, err = check_value(opt, raw[opt.key])
                if err:
                    problem(err[0], dotted, err[1])
                    value = opt.default
            else:
                value = _copy(opt.default)
                if opt.key == "caption_strategy" and ds_type == "huggingface":
                    value = "huggingface"  # SimpleTuner's default for these datasets: caption_column
                if opt.required_for(ds_type):
                    problem(
                        f"missing `{opt.key}`",
                        dotted,
                        f'add `{opt.key} = "{opt.example}"` to this [[datasets]] table',
                        line_key=prefix,
                    )
            values[opt.key] = value
        ds_id = values.get("id")
        if isinstance(ds_id, str):
            if ds_id in seen_ids:
                problem(f"dataset id `{ds_id}` is used twice", f"{prefix}.id", "give every dataset its own id")
            seen_ids[ds_id] = i
        datasets.append(Section(**values))

    project = Project(path=path, sections=sections, datasets=datasets, explicit=explicit, text=text)
    if any(p.is_error for p in problems):
        return None, problems
    return project, problems


def _merge_huggingface_table(raw: dict, prefix: str, problem: Any) -> dict:
    """SimpleTuner lets a huggingface dataset put its keys in a `huggingface` sub-table
    (caption_column and friends live only there in its code): they are read as the table's
    own keys, which win when both are given."""
    sub = raw.get("huggingface")
    if sub is None:
        return raw
    merged = {k: v for k, v in raw.items() if k != "huggingface"}
    if not isinstance(sub, dict):
        problem("`huggingface` must be a table of dataset_name, split, image_column...", f"{prefix}.huggingface")
        return merged
    for key, value in sub.items():
        if key in HUGGINGFACE_KEYS:
            merged.setdefault(key, value)
        else:
            hint = _did_you_mean(key, set(HUGGINGFACE_KEYS))
            fix = (
                f"did you mean `{hint}`?" if hint else "remove it (fluxtui reads: " + ", ".join(HUGGINGFACE_KEYS) + ")"
            )
            problem(f"unknown option `{key}` in the huggingface table", f"{prefix}.huggingface.{key}", fix)
    return merged


def load_or_raise(path: str | os.PathLike) -> Project:
    project, problems = load(path)
    if project is None:
        raise ConfigError(problems)
    return project


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def _all_keys() -> set[str]:
    return {o.key for o in OPTIONS}


def _section_of_key(key: str) -> str | None:
    for o in OPTIONS:
        if o.key == key:
            return o.section
    return None


def _unknown(
    key: str, message: str, candidates: set[str], otherwise: str, *, section: str | None = None
) -> tuple[str, str]:
    """(message, fix) for a key that is not an option where it is written: a real option in
    the wrong table says where it goes; a SimpleTuner key says what fluxtui makes of it; else
    a near name, else `otherwise`."""
    bare = key.removeprefix("--")
    elsewhere = _section_of_key(bare)
    if elsewhere and elsewhere != section:  # a real option in the wrong table beats a near name
        table = "each [[datasets]] table" if elsewhere == "datasets" else f"[{elsewhere}]"
        if bare != key:
            return message, f"write it as `{bare}` under {table} (fluxtui keys have no `--`)"
        if elsewhere == "datasets":  # SimpleTuner's global dataset defaults
            return message, "move it into each [[datasets]] table (a dataset option here)"
        return message, f"move it under [{elsewhere}]"
    if elsewhere and bare != key:
        return message, f"write it as `{bare}` (fluxtui keys have no `--`)"
    from .simpletuner_names import explain

    known = explain(bare) if section != "datasets" else explain_dataset(bare)
    if known is not None:
        if known.startswith("not supported by fluxtui"):
            return f"`{key}`: {known}", "remove it"
        return known, "rename it" if " in fluxtui it is " in known else "remove it"
    hint = _did_you_mean(key, candidates)
    return message, f"did you mean `{hint}`?" if hint else otherwise


def explain_dataset(key: str) -> str | None:
    from .simpletuner_names import DATASET_KEYS, explain

    name = DATASET_KEYS.get(key)
    if name is None:
        return explain(key)
    if name.target is not None and name.target != f"datasets.{key}":
        return f"`{key}` is SimpleTuner's name: in fluxtui it is {name.place()}"
    if name.unsupported and name.dropped_if is None:
        return f"not supported by fluxtui: {name.unsupported}"
    if name.dropped:
        return f"`{key}` is a SimpleTuner option fluxtui does not need: {name.dropped}"
    return None


def _did_you_mean(word: str, candidates: set[str]) -> str | None:
    """The nearest candidate within a small edit distance (1 for short words, else 2): a
    far-fetched guess (data_backend_config -> tread_config) is worse than none."""
    limit = 1 if len(word) <= 5 else 2
    best: tuple[int, str] | None = None
    for c in sorted(candidates):
        if abs(len(c) - len(word)) > limit:
            continue
        d = edit_distance(word.lower(), c.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, c)
    return best[1] if best else None


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: a swap of neighbours is one edit)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


# -- value checks -------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _example(opt: Option) -> str:
    sample = opt.default if opt.default is not None else opt.example
    return _toml_literal(sample) if sample is not None else "..."


def check_value(opt: Option, value: Any) -> tuple[Any, tuple[str, str] | None]:
    """Return (normalised value, None) or (None, (message, fix))."""
    kind = opt.kind
    want = f"`{opt.key} = {_example(opt)}`"
    if kind in ("str", "path"):
        if opt.key == "conditioning_data" and isinstance(value, list):  # SimpleTuner also writes ["id"]
            if len(value) != 1 or not isinstance(value[0], str):
                return None, (
                    "fluxtui pairs each image dataset with one conditioning dataset",
                    'name one id, e.g. `conditioning_data = "my-references"`',
                )
            value = value[0]
        if opt.key == "conditioning_type" and isinstance(value, str) and value in CONDITIONING_TYPES_REFUSED:
            return None, (
                f'"{value}" is not supported by fluxtui: {CONDITIONING_TYPES_REFUSED[value]}',
                'use "reference_strict" or "reference_loose" (Kontext reference images)',
            )
        if not isinstance(value, str):
            return None, (f"must be a string, got {_type_name(value)}", f"write it in quotes, e.g. {want}")
        if opt.choices and value not in opt.choices:
            hint = _did_you_mean(value, set(opt.choices))
            options = ", ".join(opt.choices)
            fix = f'did you mean "{hint}"?' if hint else f"use one of: {options}"
            return None, (f'"{value}" is not one of: {options}', fix)
        if value == "" and opt.default is None:
            return None, None
        return value, None
    if kind == "bool":
        if not isinstance(value, bool):
            return None, (f"must be true or false, got {_type_name(value)}", f"e.g. `{opt.key} = true` (no quotes)")
        return value, None
    if kind in ("int", "float", "auto_int"):
        if kind == "auto_int" and value == "auto":
            return value, None
        ok = isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":
            ok = ok or isinstance(value, float)
        if not ok:
            what = "an integer" if kind != "float" else "a number"
            if kind == "auto_int":
                what = 'an integer or "auto"'
            return None, (f"must be {what}, got {_type_name(value)}", f"e.g. {want}")
        if isinstance(value, float) and not math.isfinite(value):
            return None, ("must be a finite number", f"e.g. {want}")
        if opt.min is not None and value < opt.min:
            return None, (f"{value} is below the minimum {_num(opt.min)}", f"use a value >= {_num(opt.min)}")
        if opt.max is not None and value > opt.max:
            return None, (f"{value} is above the maximum {_num(opt.max)}", f"use a value <= {_num(opt.max)}")
        return (float(value) if kind == "float" else value), None
    if kind == "float_list":
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value
        ):
            return None, ("must be a list of positive numbers", f"e.g. {want}")
        return [float(v) for v in value], None
    if kind in ("str_list", "int_list"):
        item = str if kind == "str_list" else int
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            what = "strings" if item is str else "integers"
            return None, (f"must be a list of {what}", f"e.g. {want}")
        if opt.key == "validation_resolution":
            bad = [v for v in value if not re.fullmatch(r"\d+x\d+", v)]
            if bad:
                return None, (f'"{bad[0]}" is not WIDTHxHEIGHT', 'e.g. ["1024x1024", "1280x768"]')
        # the range applies to each item (for WxH strings: to each side)
        numbers = [int(n) for v in value for n in v.split("x")] if item is str else value
        outside = [n for n in numbers if _outside(opt, n)]
        if outside:
            return None, (
                f"{outside[0]} is outside {_num(opt.min)}..{_num(opt.max)}",
                f"use values from {_num(opt.min)} to {_num(opt.max)}",
            )
        return value, None
    if kind == "prompts":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return None, ('must be a table of name = "prompt"', '[validation.prompts] then `portrait = "a portrait"`')
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z0-9_.-]+", k)]
        if bad:
            return None, (f'prompt name "{bad[0]}" cannot be a file name', "use letters, digits, '-', '_' and '.'")
        return value, None
    if kind == "routes":
        return _check_routes(value)
    raise AssertionError(f"unknown kind {kind}")


def _outside(opt: Option, n: float) -> bool:
    return (opt.min is not None and n < opt.min) or (opt.max is not None and n > opt.max)


def _check_routes(value: Any) -> tuple[Any, tuple[str, str] | None]:
    fix = "tread_config = { routes = [{ selection_ratio = 0.5, start_layer_idx = 2, end_layer_idx = -2 }] }"
    if not isinstance(value, dict) or set(value) != {"routes"} or not isinstance(value["routes"], list):
        return None, ("must be a table with one key, routes", fix)
    for r in value["routes"]:
        if not isinstance(r, dict) or set(r) != {"selection_ratio", "start_layer_idx", "end_layer_idx"}:
            return None, ("each route needs selection_ratio, start_layer_idx and end_layer_idx", fix)
        ratio = r["selection_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            return None, ("selection_ratio must be between 0 and 1 (exclusive)", fix)
        if not all(isinstance(r[k], int) and not isinstance(r[k], bool) for k in ("start_layer_idx", "end_layer_idx")):
            return None, ("layer indices must be integers", fix)
    return value, None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# -- line numbers -------------------------------------------------------------------------


class KeyLocator:
    """Finds the line of `key = ...` inside a table, from the text itself.

    tomllib reports no positions for values, so this scans table headers and key lines.
    A key that is not written on a line of its own (dotted keys, inline tables) gets no
    line rather than a guess.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*(\]\]?)\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=")

    def __init__(self, text: str):
        self.lines: dict[str, int] = {}
        seen: dict[str, int] = {}
        table = ""
        array_index: dict[str, int] = {}
        open_brackets = 0
        for n, line in enumerate(text.splitlines(), start=1):
            if open_brackets > 0:  # inside a multi-line array value
                open_brackets += _bracket_balance(line)
                continue
            m = self._HEADER.match(line)
            if m:
                name = m[2].replace('"', "").replace("'", "").replace(" ", "")
                if m[1] == "[[":
                    idx = array_index.get(name, -1) + 1
                    array_index[name] = idx
                    table = f"{name}[{idx}]"
                else:
                    table = name
                seen[table] = seen.get(table, 0) + 1
                self.lines.setdefault(table, n)
                continue
            m = self._KEY.match(line)
            if m:
                key = m[1].strip("\"'")
                dotted = f"{table}.{key}" if table else key
                seen[dotted] = seen.get(dotted, 0) + 1
                self.lines.setdefault(dotted, n)
                open_brackets = _bracket_balance(line.split("=", 1)[1])
        # A key seen twice (which TOML forbids anyway) has no sure line.
        for k, count in seen.items():
            if count > 1:
                self.lines.pop(k, None)

    def line_of(self, dotted: str | None) -> int | None:
        if dotted is None:
            return None
        return self.lines.get(dotted)


def _bracket_balance(s: str) -> int:
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'[^\']*\'', "", s)
    s = s.split("#", 1)[0]
    return s.count("[") + s.count("{") - s.count("]") - s.count("}")


# -- writing ------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_values(path: str | os.PathLike, changes: dict[str, Any]) -> str:
    """Set options ("training.learning_rate", "datasets[0].repeats", "validation.prompts.x")
    in the file, keeping comments and layout; returns the new text. Values are checked first:
    a bad value raises ConfigError and the file is left untouched."""
    import tomlkit  # only writers pay for it

    path = Path(path)
    if path.is_dir():
        path = path / PROJECT_FILE
    text = path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    problems = []
    for dotted, value in changes.items():
        target, key, opt = _edit_target(doc, dotted)
        if opt is not None and value is not None:
            value, err = check_value(opt, value)
            if err:
                problems.append(Problem(err[0], key=dotted, file=path.name, fix=err[1]))
                continue
        if value is None:
            if key in target:
                del target[key]
        else:
            target[key] = value
    if problems:
        raise ConfigError(problems)
    new_text = tomlkit.dumps(doc)
    atomic_write_text(path, new_text)
    return new_text


def _edit_target(doc: Any, dotted: str) -> tuple[Any, str, Option | None]:
    import tomlkit

    m = re.fullmatch(r"datasets\[(\d+)\]\.(\w+)", dotted)
    if m:
        tables = doc.get("datasets")
        i = int(m[1])
        if tables is None or i >= len(tables):
            raise KeyError(f"no dataset {i} in the file")
        from .schema import BY_DOTTED

        return tables[i], m[2], BY_DOTTED.get(f"datasets.{m[2]}")
    if dotted.startswith("validation.prompts."):
        validation = doc.setdefault("validation", tomlkit.table())
        prompts = validation.setdefault("prompts", tomlkit.table())
        return prompts, dotted.split(".", 2)[2], None
    section, key = dotted.rsplit(".", 1)
    from .schema import BY_DOTTED

    opt = BY_DOTTED.get(dotted)
    if opt is None:
        raise KeyError(f"unknown option {dotted}")
    if section not in doc:
        doc[section] = tomlkit.table()
    return doc[section], key, opt


def _toml_literal(value: Any) -> str:
    """One value as TOML source (for templates and fixes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() or abs(value) >= 1e16 else f"{value:.1f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_literal(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(type(value))


__all__ = [
    "PROJECT_FILE",
    "SECTIONS",
    "KeyLocator",
    "Project",
    "Section",
    "atomic_write_text",
    "check_value",
    "load",
    "load_or_raise",
    "parse",
    "set_values",
]
