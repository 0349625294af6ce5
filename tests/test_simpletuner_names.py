"""SimpleTuner's names in project.toml: near names only, SimpleTuner keys named for what they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxtui.core import config
from fluxtui.core.schema import OPTIONS, options_in
from fluxtui.core.simpletuner_names import CONFIG_KEYS, DATASET_KEYS, ConvertError, config_name, convert


def _problems(text: str) -> dict[str, str]:
    _, problems = config.parse(text, Path("project.toml"))
    return {p.key: f"{p.message} (fix: {p.fix})" for p in problems}


def test_edit_distance_counts_a_swap_as_one():
    assert config.edit_distance("learnign_rate", "learning_rate") == 1
    assert config.edit_distance("seed", "sede") == 1
    assert config.edit_distance("kitten", "sitting") == 3


def test_data_backend_config_never_suggests_tread_config():
    for text in (
        'data_backend_config = "config/multidatabackend.json"\n',
        '[training]\ndata_backend_config = "config/multidatabackend.json"\n',
    ):
        shown = " ".join(_problems(text).values())
        assert "tread_config" not in shown
        assert "[[datasets]]" in shown and "fluxtui import" in shown


def test_model_family_never_suggests_model_flavour_and_says_what_it_is():
    shown = _problems('[model]\nmodel_family = "flux"\n')["model.model_family"]
    assert "model_flavour" not in shown
    assert "fluxtui trains Flux only" in shown


@pytest.mark.parametrize("key", ["num_eval_images", "eval_steps_interval", "validation_epoch_interval", "use_dora"])
def test_unsupported_simpletuner_keys_give_the_reason(key):
    shown = _problems(f"[validation]\n{key} = 1\n")[f"validation.{key}"]
    assert "not supported by fluxtui: " in shown
    assert "unknown option" not in shown


def test_a_simpletuner_alias_names_its_place():
    shown = _problems("[validation]\nvalidation_step_interval = 50\n")["validation.validation_step_interval"]
    assert "`validation_step_interval` is SimpleTuner's name: in fluxtui it is [validation] validation_steps" in shown
    shown = _problems("[training]\ncheckpoint_step_interval = 50\n")["training.checkpoint_step_interval"]
    assert "[training] checkpointing_steps" in shown


def test_near_names_still_suggested_and_far_ones_not():
    assert "did you mean `learning_rate`" in _problems("[training]\nlearnin_rate = 1\n")["training.learnin_rate"]
    assert "did you mean `model_flavour`" in _problems('[model]\nmodel_flavor = "dev"\n')["model.model_flavor"]
    far = _problems("[training]\nbanana_split = 1\n")["training.banana_split"]
    assert "did you mean" not in far


def test_dashed_keys_say_how_to_write_them():
    shown = _problems('"--learning_rate" = 1e-4\n')["--learning_rate"]
    assert "`learning_rate` under [training]" in shown


def test_every_option_has_a_row_derived_from_the_schema():
    for opt in OPTIONS:
        if opt.section == "datasets":
            assert DATASET_KEYS[opt.key].target == opt.dotted
        elif opt.kind != "prompts":
            assert CONFIG_KEYS[opt.key].target == opt.dotted
    for name in list(CONFIG_KEYS.values()) + list(DATASET_KEYS.values()):
        assert sum(x is not None for x in (name.target, name.dropped or name.unsupported)) >= 1, name


def test_other_families_options_are_dropped_by_prefix():
    assert "another model family" in config_name("sdxl_validation_pipeline_mode").dropped
    assert config_name("no_such_key_anywhere") is None


def test_convert_reads_simpletuners_loose_values():
    by = {o.dotted: o for o in OPTIONS}
    assert convert(by["hub.push_to_hub"], "true") is True
    assert convert(by["hub.push_to_hub"], "0") is False
    assert convert(by["training.learning_rate"], "1e-4") == 1e-4
    assert convert(by["validation.validation_num_inference_steps"], "20") == 20
    assert convert(by["validation.validation_resolution"], "1024x1024,1280x768") == ["1024x1024", "1280x768"]
    assert convert(by["hardware.num_processes"], "2") == 2
    ds = {o.key: o for o in options_in("datasets")}
    assert convert(ds["crop_aspect_buckets"], "1.0, 1.5") == [1.0, 1.5]
    with pytest.raises(ConvertError):
        convert(by["hub.push_to_hub"], "maybe")
    with pytest.raises(ConvertError):
        convert(by["training.max_train_steps"], "12.5")


@pytest.mark.parametrize(
    "key",
    [
        "lycoris_config",
        "assistant_lora_path",
        "assistant_lora_weight_name",
        "assistant_lora_strength",
        "assistant_lora_inference_strength",
        "disable_assistant_lora",
    ],
)
def test_lycoris_and_assistant_lora_keys_are_fluxtuis_own_under_lora(key):
    assert CONFIG_KEYS[key].target == f"lora.{key}" and not CONFIG_KEYS[key].unsupported
    shown = _problems(f'[training]\n{key} = "x"\n')[f"training.{key}"]
    assert "move it under [lora]" in shown, shown
    assert "not supported" not in shown and "lokr_factor" not in shown
