"""Files generated from the option schema must match it: regenerate with
`python -m fluxtui.core.generate` after changing fluxtui/core/schema.py."""

from __future__ import annotations

import json

import pytest

from fluxtui.core import generate
from fluxtui.core.schema import OPTIONS, SECTIONS


@pytest.mark.parametrize("path", list(generate.generated()), ids=lambda p: p.name)
def test_generated_file_is_up_to_date(path):
    expected = generate.generated()[path]
    assert path.exists(), f"{path} is missing: run python -m fluxtui.core.generate"
    assert path.read_text(encoding="utf-8") == expected, f"{path} is stale: run python -m fluxtui.core.generate"


def test_every_option_is_documented_everywhere():
    template = generate.TEMPLATE.read_text()
    doc = generate.OPTIONS_DOC.read_text()
    schema = json.loads(generate.JSON_SCHEMA.read_text())
    for o in OPTIONS:
        assert f"`{o.key}`" in doc, o.dotted
        if o.kind != "prompts":
            assert f"{o.key} = " in template, o.dotted
        props = schema["properties"][o.section]
        props = props["items"]["properties"] if o.section == "datasets" else props["properties"]
        assert o.key in props, o.dotted


def test_options_are_well_formed():
    seen = set()
    for o in OPTIONS:
        assert o.section in SECTIONS
        assert o.dotted not in seen, f"{o.dotted} declared twice"
        seen.add(o.dotted)
        assert o.help.strip() and len(o.help) < 300
        if o.choices and o.default is not None:
            assert o.default in o.choices, o.dotted
        if o.default is not None and o.min is not None and isinstance(o.default, (int, float)):
            assert o.min <= o.default, o.dotted
        if o.default is not None and o.max is not None and isinstance(o.default, (int, float)):
            assert o.default <= o.max, o.dotted


def test_json_schema_accepts_the_template():
    jsonschema = pytest.importorskip("jsonschema")
    import tomllib

    data = tomllib.loads(generate.template_text())
    jsonschema.validate(data, generate.json_schema())
