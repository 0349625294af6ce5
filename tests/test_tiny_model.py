"""The offline random-weight Flux pipeline used by the trainer tests and the benchmarks."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from fluxtui.trainer import tiny  # noqa: E402
from fluxtui.trainer.tiny import MARKER_NAME, build_tiny_flux, ensure_tiny_flux, transformer_config  # noqa: E402

COMPONENTS = ["transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"]


def _load_pipeline(path: Path):
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("tiny") / "flux"
    build_tiny_flux(dest, seed=0)  # warm-up: the first build pays the lazy imports
    dest2 = tmp_path_factory.mktemp("tiny") / "flux"
    start = time.perf_counter()
    build_tiny_flux(dest2, seed=0)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in dest2.rglob("*") if f.is_file())
    print(f"\ntiny Flux build: {seconds * 1000:.0f} ms after imports, {size / 1e6:.2f} MB on disk")
    return dest2


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return _load_pipeline(tiny_dir)


def test_layout(tiny_dir):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    for name in COMPONENTS:
        assert (tiny_dir / name).is_dir(), name
        assert name in index
    assert (tiny_dir / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    size = sum(f.stat().st_size for f in tiny_dir.rglob("*") if f.is_file())
    assert size < 2_000_000


def test_components(pipe):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.text_encoder_2, T5EncoderModel)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)

    tc = pipe.transformer.config
    assert tc.in_channels == 64
    assert tc.guidance_embeds is True
    assert sum(tc.axes_dims_rope) == tc.attention_head_dim
    assert tc.pooled_projection_dim == pipe.text_encoder.config.hidden_size
    assert tc.joint_attention_dim == pipe.text_encoder_2.config.d_model

    vc = pipe.vae.config
    assert vc.latent_channels == 16
    assert pipe.vae_scale_factor == 8
    assert vc.shift_factor == pytest.approx(0.1159)
    assert vc.scaling_factor == pytest.approx(0.3611)

    sc = pipe.scheduler.config
    assert sc.use_dynamic_shifting is True
    assert (sc.base_shift, sc.max_shift) == (0.5, 1.15)
    assert (sc.base_image_seq_len, sc.max_image_seq_len) == (256, 4096)

    # The pooled CLIP output is taken at the eos token: model and tokenizer must agree.
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id
    assert pipe.tokenizer.model_max_length == 77 == pipe.text_encoder.config.max_position_embeddings


def test_real_flux_module_names(pipe):
    names = {name for name, _ in pipe.transformer.named_modules()}
    for expected in [
        "transformer_blocks.0.attn.to_q",
        "transformer_blocks.0.attn.add_q_proj",
        "transformer_blocks.0.attn.to_add_out",
        "transformer_blocks.0.ff.net.0.proj",
        "transformer_blocks.0.ff_context.net.2",
        "single_transformer_blocks.0.proj_mlp",
        "single_transformer_blocks.1.proj_out",
        "single_transformer_blocks.1.attn.to_k",
        "time_text_embed.guidance_embedder.linear_1",
    ]:
        assert expected in names, expected


def test_pipeline_runs(pipe):
    out = pipe(
        "a photo of a cat",
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=3.5,
        max_sequence_length=32,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.images.shape == (1, 64, 64, 3)
    assert out.images.dtype.kind == "f"
    assert (out.images >= 0).all() and (out.images <= 1).all()

    pil = pipe(
        "sks dog",
        height=64,
        width=128,
        num_inference_steps=2,
        max_sequence_length=32,
        output_type="pil",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert pil.size == (128, 64)


def test_tokenizers_give_real_distinct_ids(pipe):
    captions = ["a photo of a cat on the grass", "zebra quokka, 42 hills!"]
    for tok in (pipe.tokenizer, pipe.tokenizer_2):
        ids = [tok(c, add_special_tokens=False).input_ids for c in captions]
        assert ids[0] != ids[1]
        for seq in ids:
            assert seq and tok.unk_token_id not in seq, tok.convert_ids_to_tokens(seq)
    # Common caption words are whole tokens.
    assert pipe.tokenizer.tokenize("cat") == ["cat</w>"]
    assert pipe.tokenizer_2.tokenize("cat") == ["▁cat"]
    # The pipeline's padded encodings fit the models.
    enc = pipe.tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert enc.input_ids.shape == (2, 77)
    assert int(enc.input_ids.max()) < pipe.text_encoder.config.vocab_size
    enc2 = pipe.tokenizer_2(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    assert enc2.input_ids.shape == (2, 32)
    assert int(enc2.input_ids.max()) < pipe.text_encoder_2.config.vocab_size


def _files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_same_seed_is_byte_identical(tiny_dir, tmp_path):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    again = build_tiny_flux(tmp_path / "again", seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert _files(again) == _files(tiny_dir)

    other = build_tiny_flux(tmp_path / "other", seed=1)
    name = "transformer/diffusion_pytorch_model.safetensors"
    assert _files(other)[name] != _files(tiny_dir)[name]


def test_small_size(tmp_path):
    cfg = transformer_config("small")
    assert cfg["num_attention_heads"] * cfg["attention_head_dim"] == 256
    assert (cfg["num_layers"], cfg["num_single_layers"]) == (2, 4)
    start = time.perf_counter()
    path = build_tiny_flux(tmp_path / "small", seed=0, size="small")
    print(f"\nsmall Flux build: {(time.perf_counter() - start) * 1000:.0f} ms")
    pipe = _load_pipeline(path)
    assert pipe.transformer.config.attention_head_dim == 64
    assert pipe.text_encoder.config.hidden_size == 64
    out = pipe(
        "a red car",
        height=64,
        width=64,
        num_inference_steps=1,
        max_sequence_length=16,
        output_type="np",
    )
    assert out.images.shape == (1, 64, 64, 3)


def test_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny Flux size"):
        build_tiny_flux(tmp_path / "x", size="huge")


def test_ensure_builds_once_and_reuses(tmp_path, monkeypatch):
    path = ensure_tiny_flux(tmp_path, seed=3)
    assert path == tmp_path / "tiny-3"
    assert (path / MARKER_NAME).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-3"]  # no temp folders left

    def fail(*args, **kwargs):
        raise AssertionError("should not rebuild")

    monkeypatch.setattr(tiny, "build_tiny_flux", fail)
    assert ensure_tiny_flux(tmp_path, seed=3) == path


def test_ensure_replaces_an_incomplete_folder(tmp_path):
    stale = tmp_path / "tiny-0"
    (stale / "transformer").mkdir(parents=True)
    (stale / "transformer" / "junk").write_text("half a copy")
    path = ensure_tiny_flux(tmp_path, seed=0)
    assert (path / MARKER_NAME).is_file()
    assert not (path / "transformer" / "junk").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-0"]


def test_ensure_race_loser_removes_its_copy(tmp_path):
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(ensure_tiny_flux(tmp_path, seed=5))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [tmp_path / "tiny-5"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-5"]
    assert (
        _files(results[0])["transformer/diffusion_pytorch_model.safetensors"]
        == _files(build_tiny_flux(tmp_path.parent / f"{tmp_path.name}-ref", seed=5))[
            "transformer/diffusion_pytorch_model.safetensors"
        ]
    )


def test_ensure_loser_path_is_taken(tmp_path, monkeypatch):
    """Another process finishes the same build while ours is running: ours is discarded."""
    real_build = tiny.build_tiny_flux
    calls: list[Path] = []

    def build_while_another_wins(dest, *, seed, size):
        calls.append(Path(dest))
        real_build(dest, seed=seed, size=size)
        if len(calls) == 1:
            ensure_tiny_flux(tmp_path, seed=seed, size=size)  # the "other process"

    monkeypatch.setattr(tiny, "build_tiny_flux", build_while_another_wins)
    path = ensure_tiny_flux(tmp_path, seed=7)
    assert len(calls) == 2
    assert path == tmp_path / "tiny-7" and (path / MARKER_NAME).is_file()
    assert not calls[0].exists()  # the loser's temp folder is gone
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-7"]
