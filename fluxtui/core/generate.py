"""Files generated from the option schema: the commented template, docs, JSON Schema.

`python -m fluxtui.core.generate` rewrites them; a test fails when one is out of date.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from .config import _toml_literal, atomic_write_text
from .schema import BY_DOTTED, DATASET_TYPES, HUGGINGFACE_KEYS, SECTIONS, Option, options_in, table_sections

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "workspace_template" / "project.toml"
OPTIONS_DOC = ROOT / "docs" / "options.md"
JSON_SCHEMA = ROOT / "docs" / "project.schema.json"


def _constraint(o: Option) -> str:
    if o.choices:
        return "one of: " + ", ".join(o.choices)
    parts = []
    if o.min is not None:
        parts.append(f">= {_fmt(o.min)}")
    if o.max is not None:
        parts.append(f"<= {_fmt(o.max)}")
    if o.kind == "auto_int":
        parts.insert(0, '"auto" or an integer')
    if parts and o.kind in ("int_list", "str_list"):
        parts.insert(0, "each side" if o.key == "validation_resolution" else "each")
    return ", ".join(parts)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _comment(text: str, width: int = 92) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def _option_lines(o: Option) -> list[str]:
    lines = _comment(o.help)
    constraint = _constraint(o)
    if constraint:
        lines.append(f"# ({constraint})")
    if o.default is None or (o.dataset_types and "local" not in o.dataset_types):
        # unset, or for another kind of dataset than the template's local folder: commented out
        sample = o.example if o.default is None and o.example is not None else (o.default or "")
        lines.append(f"# {o.key} = {_toml_literal(sample)}")
    else:
        lines.append(f"{o.key} = {_toml_literal(o.default)}")
    return lines


def template_text() -> str:
    out = [
        "# fluxtui project. Every option is listed with its default; edit what you need.",
        "# `fluxtui validate .` checks this file and the datasets; docs/options.md has the details.",
        "",
    ]
    for sec in table_sections():
        out += _comment(SECTIONS[sec])
        out.append(f"[{sec}]")
        for o in options_in(sec):
            if o.kind == "prompts":
                continue
            out += _option_lines(o)
        out.append("")
        if sec == "validation":
            out += _comment(SECTIONS["validation.prompts"])
            out.append("[validation.prompts]")
            out.append('# portrait = "a portrait of a woman in a red coat"')
            out.append("")
    out += _comment(SECTIONS["datasets"] + " Copy the table to add another folder.")
    out.append("[[datasets]]")
    for o in options_in("datasets"):
        if o.required_for("local"):
            out += _comment(o.help)
            out.append(f"{o.key} = {_toml_literal(o.example)}")
        else:
            out += _option_lines(o)
    out.append("")
    return "\n".join(out)


def options_markdown() -> str:
    out = [
        "# project.toml options",
        "",
        "Generated from `fluxtui/core/schema.py` by `python -m fluxtui.core.generate`; do not edit.",
        "Resume: `yes` when a running training can take the change by resuming from a checkpoint",
        "(`fluxtui run --watch` restarts it); `new run` when the change starts a new run.",
        "",
    ]
    for sec in [*table_sections(), "datasets"]:
        header = "[[datasets]]" if sec == "datasets" else f"[{sec}]"
        out += [f"## {header}", "", SECTIONS[sec], ""]
        out.append("| key | type | default | allowed | resume | description |")
        out.append("|---|---|---|---|---|---|")
        for o in options_in(sec):
            default = "required" if o.required else ("" if o.default is None else _toml_literal(o.default))
            if o.required and o.dataset_types:
                default = "required (type " + " or ".join(o.dataset_types) + ")"
            allowed = _constraint(o).replace("|", "\\|")
            resume = "yes" if o.absorbed_by_resume else "new run"
            help_text = o.help.replace("|", "\\|")
            out.append(f"| `{o.key}` | {o.kind} | `{default}` | {allowed} | {resume} | {help_text} |")
        out.append("")
    return "\n".join(out)


def _json_type(o: Option) -> dict:
    kind = o.kind
    if kind in ("str", "path"):
        s: dict = {"type": "string"}
        if o.choices:
            s["enum"] = list(o.choices)
        if o.key == "conditioning_data":  # SimpleTuner writes "id" or ["id"]
            s = {"oneOf": [s, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}]}
    elif kind == "bool":
        s = {"type": "boolean"}
    elif kind == "int":
        s = {"type": "integer"}
    elif kind == "float":
        s = {"type": "number"}
    elif kind == "auto_int":
        s = {"oneOf": [{"type": "integer"}, {"const": "auto"}]}
    elif kind == "str_list":
        s = {"type": "array", "items": {"type": "string"}}
    elif kind == "int_list":
        s = {"type": "array", "items": {"type": "integer"}}
    elif kind == "float_list":
        s = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}
    elif kind == "prompts":
        s = {"type": "object", "additionalProperties": {"type": "string"}}
    elif kind == "routes":
        route = {
            "type": "object",
            "properties": {
                "selection_ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "start_layer_idx": {"type": "integer"},
                "end_layer_idx": {"type": "integer"},
            },
            "required": ["selection_ratio", "start_layer_idx", "end_layer_idx"],
            "additionalProperties": False,
        }
        s = {
            "type": "object",
            "properties": {"routes": {"type": "array", "items": route}},
            "additionalProperties": False,
        }
    else:
        raise AssertionError(kind)
    if o.kind in ("int", "float", "auto_int", "int_list"):
        target = s if "type" in s else s["oneOf"][0]
        target = target["items"] if o.kind == "int_list" else target
        if o.min is not None:
            target["minimum"] = o.min
        if o.max is not None:
            target["maximum"] = o.max
    s["description"] = o.help
    if o.default is not None:
        s["default"] = o.default
    return s


def json_schema() -> dict:
    props: dict = {}
    for sec in table_sections():
        props[sec] = {
            "type": "object",
            "description": SECTIONS[sec],
            "properties": {o.key: _json_type(o) for o in options_in(sec)},
            "additionalProperties": False,
        }
    ds = options_in("datasets")
    props["datasets"] = {
        "type": "array",
        "description": SECTIONS["datasets"],
        "items": {
            "type": "object",
            "properties": {
                **{o.key: _json_type(o) for o in ds},
                "huggingface": {
                    "type": "object",
                    "description": "SimpleTuner's sub-table for type = huggingface: the same keys as the table's own.",
                    "properties": {k: _json_type(BY_DOTTED[f"datasets.{k}"]) for k in HUGGINGFACE_KEYS},
                    "additionalProperties": False,
                },
            },
            "required": [o.key for o in ds if o.required and o.dataset_types is None],
            # per type: instance_data_dir for local folders, dataset_name for huggingface
            "allOf": [
                {
                    "if": _type_is(t),
                    "then": {
                        "required": [o.key for o in ds if o.required and o.dataset_types and t in o.dataset_types]
                    },
                }
                for t in DATASET_TYPES
            ],
            "additionalProperties": False,
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fluxtui project.toml",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }


def _type_is(t: str) -> dict:
    """JSON Schema: a [[datasets]] table of type t (a missing type is the default's)."""
    default = BY_DOTTED["datasets.type"].default
    if t == default:
        return {"anyOf": [{"not": {"required": ["type"]}}, {"properties": {"type": {"const": t}}}]}
    return {"required": ["type"], "properties": {"type": {"const": t}}}


def generated() -> dict[Path, str]:
    return {
        TEMPLATE: template_text(),
        OPTIONS_DOC: options_markdown(),
        JSON_SCHEMA: json.dumps(json_schema(), indent=2) + "\n",
    }


def main() -> int:
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
