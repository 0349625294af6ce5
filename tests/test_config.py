"""project.toml reading, checking and editing."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxtui.core import config
from fluxtui.core.config import KeyLocator
from fluxtui.core.generate import template_text
from fluxtui.core.problems import ConfigError, Problem
from fluxtui.core.schema import OPTIONS

MINIMAL = """\
[model]
model_flavour = "dev"

[[datasets]]
id = "a"
instance_data_dir = "datasets/a"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "project.toml"
    p.write_text(text, encoding="utf-8")
    return p


def only_problem(tmp_path: Path, text: str) -> Problem:
    project, problems = config.load(write(tmp_path, text))
    assert project is None
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_template_loads_with_every_default(tmp_path):
    project, problems = config.load(write(tmp_path, template_text()))
    assert problems == []
    for o in OPTIONS:
        if o.section == "datasets":
            if not o.required:
                assert getattr(project.datasets[0], o.key) == o.default
        else:
            assert getattr(getattr(project, o.section), o.key) == o.default, o.dotted


def test_minimal_file_gets_defaults_and_records_what_was_written(tmp_path):
    project, problems = config.load(write(tmp_path, MINIMAL))
    assert problems == []
    assert project.model.model_flavour == "dev"
    assert project.training.learning_rate == 1e-4
    assert project.explicit == {"model.model_flavour", "datasets[0].id", "datasets[0].instance_data_dir"}
    assert project.get("datasets[0].repeats") == 0
    assert project.resolve("datasets/a") == tmp_path / "datasets/a"


def test_invalid_toml_names_line_and_column(tmp_path):
    p = only_problem(tmp_path, '[model]\nmodel_flavour = "dev"\nlora_rank = = 3\n')
    assert p.line == 3
    assert "column" in p.message
    assert str(p).startswith("project.toml:3: invalid TOML")


def test_unknown_key_suggests_the_right_name(tmp_path):
    p = only_problem(tmp_path, MINIMAL + "\n[training]\nlearning_rat = 1e-4\n")
    assert p.key == "training.learning_rat"
    assert p.line == 9
    assert "learning_rate" in p.fix


@pytest.mark.parametrize(("key", "home"), [("lora_rank", "[lora]"), ("validation_steps", "[validation]")])
def test_key_in_the_wrong_section_says_where_it_belongs(tmp_path, key, home):
    p = only_problem(tmp_path, f"[training]\n{key} = 8\n" + MINIMAL)
    assert p.key == f"training.{key}"
    assert home in p.fix


def test_unknown_section_and_dataset_key(tmp_path):
    _, problems = config.load(write(tmp_path, MINIMAL + "resoluton = 512\n[modle]\nx = 1\n"))
    keys = {p.key: p for p in problems}
    assert "resolution" in keys["datasets[0].resoluton"].fix
    assert keys["datasets[0].resoluton"].line == 7
    assert "model" in keys["modle"].fix


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('[lora]\nlora_rank = "16"', "lora.lora_rank", "must be an integer, got a string"),
        ("[lora]\nlora_rank = 0", "lora.lora_rank", "below the minimum 1"),
        ("[lora]\nlora_rank = 16.5", "lora.lora_rank", "must be an integer"),
        ("[training]\nlearning_rate = 2.0", "training.learning_rate", "above the maximum 1"),
        ("[training]\nlearning_rate = nan", "training.learning_rate", "finite"),
        ('[training]\ngradient_checkpointing = "yes"', "training.gradient_checkpointing", "true or false"),
        ('[model]\nbase_model_precision = "int8-qanto"', "model.base_model_precision", 'did you mean "int8-quanto"'),
        ('[training]\noptimizer = "sgd"', "training.optimizer", "is not one of"),
        ('[validation]\nvalidation_resolution = ["1024"]', "validation.validation_resolution", "WIDTHxHEIGHT"),
        ('[hardware]\nnum_processes = "many"', "hardware.num_processes", 'an integer or "auto"'),
        ("[training]\ntread_config = { routes = [{ selection_ratio = 2 }] }", "training.tread_config", "each route"),
    ],
)
def test_bad_values_are_problems_with_key_line_and_fix(tmp_path, line, key, words):
    text = line + "\n\n[[datasets]]\nid = 'a'\ninstance_data_dir = 'a'\n"
    p = only_problem(tmp_path, text)
    assert p.key == key
    assert words in str(p)
    assert p.line == 2
    assert p.fix


def test_every_problem_is_reported_at_once(tmp_path):
    text = "[lora]\nlora_rank = 0\n[training]\nseed = -1\noptimizr = 'x'\n[[datasets]]\nid = 'a'\n"
    _, problems = config.load(write(tmp_path, text))
    assert {p.key for p in problems} == {
        "lora.lora_rank",
        "training.seed",
        "training.optimizr",
        "datasets[0].instance_data_dir",
    }
    missing = next(p for p in problems if p.key == "datasets[0].instance_data_dir")
    assert missing.line == 6  # the [[datasets]] header: the key has no line of its own


def test_duplicate_dataset_ids(tmp_path):
    p = only_problem(tmp_path, MINIMAL + "[[datasets]]\nid = 'a'\ninstance_data_dir = 'b'\n")
    assert p.key == "datasets[1].id"
    assert p.line == 8


def test_missing_file(tmp_path):
    project, problems = config.load(tmp_path)
    assert project is None
    assert "fluxtui init" in problems[0].fix


def test_no_line_is_guessed_for_dotted_or_inline_keys():
    loc = KeyLocator('training.seed = 3\n[lora]\nx = { lora_rank = 2 }\nlist = [\n  "a = 1",\n]\n')
    assert loc.line_of("training.seed") is None  # a dotted key at top level is `training.seed` literally
    assert loc.line_of("lora.lora_rank") is None
    assert loc.line_of("lora.list") == 4
    assert loc.line_of("lora.a") is None  # inside a multi-line array


def test_edit_keeps_every_other_byte(tmp_path):
    path = write(tmp_path, template_text())
    before = path.read_text()
    config.set_values(path, {"training.learning_rate": 3e-4})
    after = path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == [("learning_rate = 0.0001", "learning_rate = 0.0003")]
    assert len(before.splitlines()) == len(after.splitlines())
    assert config.load(path)[0].training.learning_rate == 3e-4


def test_edit_adds_a_commented_out_option_and_dataset_values(tmp_path):
    path = write(tmp_path, template_text())
    config.set_values(
        path,
        {"lora.lora_alpha": 8.0, "datasets[0].repeats": 3, "validation.prompts.portrait": "a portrait"},
    )
    project, problems = config.load(path)
    assert problems == []
    assert project.lora.lora_alpha == 8.0
    assert project.datasets[0].repeats == 3
    assert project.validation.prompts == {"portrait": "a portrait"}
    assert "# LoRA rank: capacity of the adapter." in path.read_text()


def test_bad_edit_leaves_the_file_untouched(tmp_path):
    path = write(tmp_path, template_text())
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        config.set_values(path, {"training.learning_rate": 1e-4, "lora.lora_rank": -1})
    assert err.value.problems[0].key == "lora.lora_rank"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["project.toml"]  # no temp file left


def test_atomic_write_keeps_mode(tmp_path):
    path = write(tmp_path, "x")
    path.chmod(0o640)
    config.atomic_write_text(path, "y")
    assert path.read_text() == "y"
    assert path.stat().st_mode & 0o777 == 0o640


def test_config_hash_changes_with_values(tmp_path):
    a = config.parse(MINIMAL, tmp_path / "project.toml")[0]
    b = config.parse(MINIMAL.replace("dev", "schnell"), tmp_path / "project.toml")[0]
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == config.parse(MINIMAL, tmp_path / "project.toml")[0].config_hash()


# -- fuzzing: nothing but our own problems, ever ----------------------------------------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_keys = st.sampled_from(sorted({o.key for o in OPTIONS} | {"x", "routes"}))
_sections = st.sampled_from(["model", "lora", "training", "validation", "memory", "hardware", "hub", "datasets", "zzz"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_sections, st.dictionaries(_keys, _values, max_size=4), max_size=4))
def test_fuzz_random_documents(tmp_path, doc):
    import tomlkit

    def clean(v):  # TOML has no null; tomlkit refuses None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v if x is not None]
        return v

    doc = clean(doc)
    if "datasets" in doc:
        doc["datasets"] = [doc["datasets"]]
    try:
        text = tomlkit.dumps(doc)
        tomllib.loads(text)
    except Exception:
        return  # not a document TOML can express; the bytes fuzzer covers broken text
    project, problems = config.parse(text, tmp_path / "project.toml")
    assert project is not None or problems
    assert all(isinstance(p, Problem) and str(p) for p in problems)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "project.toml"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
    project, problems = config.load(path)
    assert project is not None or problems
