"""Loading Flux for training: sources, local folders, hub failures, random weights, quantisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, make_project

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fluxtui.trainer.models import ModelLoadError, encode_prompts, load_models  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_tiny_random_loads_and_encodes(tmp_path):
    project = make_project(tmp_path / "ws", TINY)
    models = load_models(project, device=CPU, log=lambda s: None)
    assert models.flavour == "tiny-random"
    assert models.weight_dtype == torch.float32
    assert models.has_guidance is True
    assert models.t5_max_length == 32
    assert not any(p.requires_grad for p in models.transformer.parameters())
    embeds, pooled, mask = encode_prompts(models, ["a cat", "a red dog on the grass"], device=CPU)
    assert embeds.shape == (2, 32, models.transformer.config.joint_attention_dim)
    assert pooled.shape == (2, models.transformer.config.pooled_projection_dim)
    assert mask.shape == (2, 32)
    assert 0 < int(mask[0].sum()) < int(mask[1].sum()) < 32


def test_missing_local_folder_names_the_option(tmp_path):
    project = make_project(
        tmp_path / "ws", '[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "/no/such/flux"\n'
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_model_name_or_path"
    assert "/no/such/flux" in err.value.message and "does not exist" in err.value.message


# --------------------------------------------------------------------------- sources (no network)

from fluxtui.core.schema import FLAVOURS  # noqa: E402
from fluxtui.trainer import architectures  # noqa: E402
from fluxtui.trainer import models as models_mod  # noqa: E402
from fluxtui.trainer.models import resolve_sources  # noqa: E402
from fluxtui.trainer.tiny import ensure_tiny_flux  # noqa: E402

HUB_FLAVOURS = [f for f in FLAVOURS if f != "tiny-random"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return ensure_tiny_flux(root, seed=0), ensure_tiny_flux(root, seed=1)


@pytest.mark.parametrize("flavour", HUB_FLAVOURS)
def test_each_flavour_resolves_to_its_hub_repo(flavour, tmp_path):
    project = make_project(tmp_path, f'[model]\nmodel_flavour = "{flavour}"\n')
    s = resolve_sources(project)
    assert s.pipeline.repo == FLAVOURS[flavour] and not s.pipeline.local
    assert (s.transformer.repo, s.transformer.subfolder) == (FLAVOURS[flavour], "transformer")
    assert (s.vae.repo, s.vae.subfolder) == (FLAVOURS[flavour], "vae")
    assert s.pipeline.key == "model.model_flavour"
    assert not s.random_weights and not s.tiny
    # Only the diffusers folders are fetched, never the 23 GB single-file checkpoints at the root.
    patterns = models_mod._hub_patterns(s)[FLAVOURS[flavour]][1]
    assert "model_index.json" in patterns and "transformer/*.safetensors" in patterns
    assert not [p for p in patterns if p.startswith("*")]


def test_tiny_random_resolves_to_the_workspace_cache(tmp_path):
    project = make_project(tmp_path, TINY)
    s = resolve_sources(project)
    assert s.tiny and s.pipeline.local
    assert Path(s.pipeline.repo) == tmp_path / "cache" / "models" / "tiny-0"
    assert s.transformer.subfolder == "transformer" and s.vae.subfolder == "vae"


def test_subfolder_rules(tmp_path, tiny_dirs):
    tiny0, tiny1 = tiny_dirs
    # "none" = the repo root.
    p = make_project(tmp_path / "a", '[model]\nmodel_flavour = "dev"\npretrained_transformer_subfolder = "none"\n')
    assert resolve_sources(p).transformer.subfolder is None
    # A hub override keeps the default subfolder unless told otherwise.
    p = make_project(
        tmp_path / "b", '[model]\nmodel_flavour = "dev"\npretrained_transformer_model_name_or_path = "me/my-flux"\n'
    )
    s = resolve_sources(p)
    assert (s.transformer.repo, s.transformer.subfolder, s.transformer.local) == ("me/my-flux", "transformer", False)
    assert s.transformer.key == "model.pretrained_transformer_model_name_or_path"
    assert s.pipeline.repo == FLAVOURS["dev"]
    # A local bare transformer folder (config.json at its root) needs no subfolder.
    p = make_project(
        tmp_path / "c",
        f'[model]\nmodel_flavour = "dev"\npretrained_transformer_model_name_or_path = "{tiny1 / "transformer"}"\n'
        f'pretrained_vae_model_name_or_path = "{tiny1}"\n',
    )
    s = resolve_sources(p)
    assert (Path(s.transformer.repo), s.transformer.subfolder) == (tiny1 / "transformer", None)
    # A local pipeline folder given as the VAE: its vae/ subfolder is used.
    assert (Path(s.vae.repo), s.vae.subfolder) == (tiny1, "vae")
    # Relative local paths are relative to the workspace.
    (tmp_path / "d" / "models").mkdir(parents=True)
    (tmp_path / "d" / "models" / "flux").symlink_to(tiny0)
    p = make_project(tmp_path / "d", '[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "models/flux"\n')
    s = resolve_sources(p)
    assert s.pipeline.local and Path(s.pipeline.repo) == tiny0.resolve()


def test_local_folder_as_pipeline(tmp_path, tiny_dirs):
    tiny0, _ = tiny_dirs
    project = make_project(
        tmp_path,
        f'[model]\nmodel_flavour = "schnell"\npretrained_model_name_or_path = "{tiny0}"\n'
        'base_model_precision = "no_change"\ntext_encoder_2_precision = "no_change"\n',
    )
    models = load_models(project, device=CPU, log=lambda s: None)
    assert models.source == str(tiny0)
    assert models.t5_max_length == 256  # schnell's
    assert models.has_guidance is True  # read from the model, not the flavour


def _first_weight(module) -> torch.Tensor:
    return next(iter(module.state_dict().values()))


def test_vae_and_transformer_overrides_from_local_folders(tmp_path, tiny_dirs):
    tiny0, tiny1 = tiny_dirs
    project = make_project(
        tmp_path,
        f'[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "{tiny0}"\n'
        f'pretrained_transformer_model_name_or_path = "{tiny1}"\n'
        f'pretrained_vae_model_name_or_path = "{tiny1 / "vae"}"\n'
        'base_model_precision = "no_change"\ntext_encoder_2_precision = "no_change"\ntokenizer_max_length = 24\n',
    )
    models = load_models(project, device=CPU, log=lambda s: None)
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    want_t = FluxTransformer2DModel.from_pretrained(tiny1, subfolder="transformer")
    want_v = AutoencoderKL.from_pretrained(tiny1, subfolder="vae")
    other_t = FluxTransformer2DModel.from_pretrained(tiny0, subfolder="transformer")
    assert torch.equal(_first_weight(models.transformer), _first_weight(want_t))
    assert not torch.equal(_first_weight(models.transformer), _first_weight(other_t))
    assert torch.equal(_first_weight(models.vae), _first_weight(want_v))
    assert models.t5_max_length == 24


def test_wrong_subfolder_names_the_option(tmp_path, tiny_dirs):
    tiny0, _ = tiny_dirs
    project = make_project(
        tmp_path,
        f'[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "{tiny0}"\n'
        'pretrained_transformer_subfolder = "unet"\nbase_model_precision = "no_change"\n'
        'text_encoder_2_precision = "no_change"\n',
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_transformer_subfolder"
    assert "pretrained_transformer_subfolder" in err.value.message


def test_folder_that_is_not_a_pipeline(tmp_path):
    (tmp_path / "empty").mkdir()
    project = make_project(
        tmp_path / "ws", f'[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "{tmp_path / "empty"}"\n'
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_model_name_or_path"
    assert "whole Flux pipeline" in err.value.message


# --------------------------------------------------------------------------- hub failures


def test_uncached_flavour_offline(tmp_path):
    project = make_project(tmp_path, '[model]\nmodel_flavour = "krea"\n')
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.model_flavour"
    assert "black-forest-labs/FLUX.1-Krea-dev" in err.value.message
    assert "HF_HUB_OFFLINE" in err.value.message and "local folder" in err.value.message


def test_uncached_transformer_override_offline(tmp_path, tiny_dirs):
    tiny0, _ = tiny_dirs
    project = make_project(
        tmp_path,
        f'[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "{tiny0}"\n'
        'pretrained_transformer_model_name_or_path = "fluxtui-tests/no-such-transformer"\n',
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_transformer_model_name_or_path"
    assert "fluxtui-tests/no-such-transformer" in err.value.message


def test_invalid_hub_id(tmp_path):
    project = make_project(
        tmp_path / "ws", '[model]\nmodel_flavour = "dev"\npretrained_vae_model_name_or_path = "bad id!"\n'
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_vae_model_name_or_path"
    assert "valid hub id" in err.value.message


def test_unreachable_hub(tmp_path, monkeypatch):
    """Hub allowed but unreachable here; with a network the repo is simply not found."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    project = make_project(
        tmp_path, '[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "fluxtui-tests/no-such-flux"\n'
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_model_name_or_path"
    assert "could not be reached" in err.value.message or "no such repository" in err.value.message


def _http_error(status: int, headers: dict[str, str]) -> Exception:
    """The exception huggingface_hub itself raises for this server answer."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    url = "https://huggingface.co/api/models/black-forest-labs/FLUX.1-dev/revision/main"
    response = httpx2.Response(status, request=httpx2.Request("GET", url), headers=headers)
    try:
        hf_raise_for_status(response)
    except Exception as exc:
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize(
    ("status", "headers", "needle"),
    [
        (401, {"X-Error-Code": "GatedRepo"}, "gated model"),
        (403, {"X-Error-Code": "GatedRepo"}, "accept the licence"),
        (404, {"X-Error-Code": "RepoNotFound"}, "Check the id"),
        (401, {"X-Error-Code": "RepoNotFound"}, "hf auth login"),
        (403, {}, "hf auth login"),
        (500, {}, "answered with an error"),
    ],
)
def test_hub_refusals_become_messages(status, headers, needle, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "")  # not logged in: the gated message says to log in
    src = models_mod.Source("black-forest-labs/FLUX.1-dev", None, False, "model.model_flavour")
    err = models_mod._hub_error(_http_error(status, headers), src)
    assert err.key == "model.model_flavour"
    assert needle in err.message
    assert "black-forest-labs/FLUX.1-dev" in err.message
    if headers.get("X-Error-Code") == "GatedRepo":
        assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in err.message


# --------------------------------------------------------------------------- random weights


def test_full_size_transformer_on_meta_has_the_real_parameter_count():
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        dev = FluxTransformer2DModel(**architectures.architecture("dev")["transformer"])
        schnell = FluxTransformer2DModel(**architectures.architecture("schnell")["transformer"])
    assert sum(p.numel() for p in dev.parameters()) == architectures.FULL_PARAMS == 11_901_408_320
    assert dev.config.guidance_embeds and not schnell.config.guidance_embeds
    assert sum(p.numel() for p in schnell.parameters()) < architectures.FULL_PARAMS


def test_random_weights_builds_without_download(tmp_path, monkeypatch):
    """The random_weights path end to end, at toy size (the full size needs a GPU box)."""
    monkeypatch.setattr(architectures, "architecture", lambda flavour: architectures.tiny_architecture())
    text = (
        '[model]\nmodel_flavour = "dev"\nrandom_weights = true\nbase_model_precision = "no_change"\n'
        'text_encoder_2_precision = "no_change"\ntokenizer_max_length = 16\n'
    )
    project = make_project(tmp_path, text)
    a = load_models(project, device=CPU, log=lambda s: None)
    assert a.source == "random:dev" and a.has_guidance
    b = load_models(project, device=CPU, log=lambda s: None)
    assert torch.equal(_first_weight(a.transformer), _first_weight(b.transformer))  # deterministic
    embeds, pooled, _ = encode_prompts(a, ["a cat"], device=CPU)
    assert embeds.shape == (1, 16, 32) and torch.isfinite(embeds).all() and torch.isfinite(pooled).all()
    latents = torch.randn(1, 16, 64)
    out = a.transformer(
        hidden_states=latents,
        encoder_hidden_states=embeds,
        pooled_projections=pooled,
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(16, 3),
        txt_ids=torch.zeros(16, 3),
        guidance=torch.tensor([1.0]),
        return_dict=False,
    )[0]
    assert out.shape == latents.shape and torch.isfinite(out).all()
    image = a.vae.decode(torch.randn(1, 16, 8, 8)).sample
    assert image.shape == (1, 3, 64, 64)


# --------------------------------------------------------------------------- quantised loading


@pytest.mark.parametrize("via", ["cpu", "accelerator"])
def test_load_with_quantised_transformer_and_text_encoder(via, tmp_path):
    project = make_project(
        tmp_path,
        '[model]\nmodel_flavour = "tiny-random"\nbase_model_precision = "int8-quanto"\n'
        f'text_encoder_2_precision = "int8-quanto"\ntext_encoder_1_precision = "nf4-bnb"\nquantize_via = "{via}"\n',
    )
    from fluxtui.trainer.quantise import is_quantised

    messages: list[str] = []
    models = load_models(project, device=CPU, log=messages.append)
    assert is_quantised(models.transformer) == "quanto"
    assert is_quantised(models.text_encoder_2) == "quanto"
    assert is_quantised(models.text_encoder) == "bnb"
    assert is_quantised(models.vae) is None
    assert any("int8-quanto" in m and "the CPU" in m for m in messages)  # no accelerator here
    embeds, pooled, _ = encode_prompts(models, ["a cat"], device=CPU)
    assert torch.isfinite(embeds).all() and torch.isfinite(pooled).all()
