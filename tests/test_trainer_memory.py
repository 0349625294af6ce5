"""One stage's models on the accelerator at a time (issue 12), seen from a real trainer process:
text encoders load, encode and are freed before the VAE loads; the VAE is freed before the
transformer arrives; warm caches load neither. `stage` events name what is resident and carry
the stage's memory peaks. On tiny-random and on the mid-size ("small") random pipeline."""

from __future__ import annotations

import pytest
from trainer_support import check_well_formed, end_event, events, make_workspace, run_trainer

from fluxtui.core.estimate import STAGES

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

ENCODERS = {"text_encoder", "text_encoder_2"}


@pytest.fixture
def tiny_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny-models"


def _stage_events(evs: list[dict]) -> list[dict]:
    return [e for e in evs if e["type"] == "stage"]


def _first_seen(evs: list[dict]) -> list[str]:
    out: list[str] = []
    for e in _stage_events(evs):
        if e["name"] not in out:
            out.append(e["name"])
    return out


def _check_one_stage_at_a_time(evs: list[dict], log: str) -> None:
    by_stage: dict[str, list[set[str]]] = {}
    for e in _stage_events(evs):
        assert "resident" in e, e
        by_stage.setdefault(e["name"], []).append(set(e["resident"]))
    # the caches build first, each with only its own models; then the transformer, alone
    assert [s for s in _first_seen(evs) if s in STAGES] == [s for s in STAGES if s in by_stage]
    assert all(r <= ENCODERS for r in by_stage["cache_text"])
    assert ENCODERS in by_stage["cache_text"]
    assert all(r <= {"vae"} for r in by_stage["cache_latents"])
    assert {"vae"} in by_stage["cache_latents"]
    assert by_stage["load_models"][0] == set() and by_stage["load_models"][-1] == {"transformer"}
    assert all(r == {"transformer"} for r in by_stage["train"])
    assert all(r == {"transformer", "vae"} for r in by_stage.get("validate", []))
    # and the log says the same, in that order
    marks = ["text encoders loaded", "text encoders freed", "VAE loaded", "VAE freed", "loading the transformer"]
    at = [log.index(m) for m in marks]
    assert at == sorted(at), list(zip(marks, at))


def test_each_stage_has_only_its_own_models_then_warm_caches_load_none(tmp_path, tiny_root):
    ws = make_workspace(
        tmp_path / "w",
        {"training.max_train_steps": 4, "training.checkpointing_steps": 0, "validation.validation_steps": 4},
        tiny_root=tiny_root,
    )
    cold = run_trainer(ws, "cold")
    assert cold.returncode == 0, cold.stdout[-3000:]
    evs = events(ws, "cold")
    check_well_formed(evs, "cold")
    _check_one_stage_at_a_time(evs, cold.stdout)
    # memory peaks per stage ride on the stage events (RSS on a CPU; VRAM only on CUDA)
    for e in _stage_events(evs):
        assert e["rss_peak_mb"] > 50 and "vram_peak_mb" not in e, e

    warm = run_trainer(ws, "warm", "--fresh")
    assert warm.returncode == 0, warm.stdout[-3000:]
    evs = events(ws, "warm")
    assert end_event(evs)["status"] == "completed"
    caching = [e for e in _stage_events(evs) if e["name"] in ("cache_text", "cache_latents")]
    assert caching and all(e["resident"] == [] for e in caching)
    assert all(e["done"] == e["total"] for e in caching)
    for never in ("loading text_encoder", "text encoders loaded", "loading the VAE", "VAE loaded"):
        assert never not in warm.stdout, never
    # validation still renders: the VAE comes with it, the embeddings from the cache
    assert next(e["resident"] for e in _stage_events(evs) if e["name"] == "validate") == ["transformer", "vae"]
    assert any(e["type"] == "validation" for e in evs)


def test_mid_size_random_pipeline_with_quantised_parts_keeps_the_order(tmp_path, tiny_root):
    """The "small" random pipeline (trainer/architectures.tiny_architecture("small")) from a local
    folder, T5 and transformer quantised: the same order, with quantising in it."""
    from fluxtui.trainer.tiny import build_tiny_flux

    model = build_tiny_flux(tmp_path / "small-model", seed=0, size="small")
    ws = make_workspace(
        tmp_path / "w",
        {
            "model.model_flavour": "dev",
            "model.pretrained_model_name_or_path": str(model),
            "model.base_model_precision": "int8-quanto",
            "model.text_encoder_2_precision": "int8-quanto",
            "training.max_train_steps": 2,
            "training.checkpointing_steps": 0,
            "validation.validation_steps": 0,
        },
        tiny_root=tiny_root,
    )
    proc = run_trainer(ws, "mid", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    evs = events(ws, "mid")
    check_well_formed(evs, "mid")
    _check_one_stage_at_a_time(evs, proc.stdout)
    log = proc.stdout
    assert log.index("text encoders freed") < log.index("quantising the transformer to int8-quanto")


def test_stage_meter_keeps_each_stages_peak_across_returns():
    """RSS peaks are per stage (VmHWM reset at each stage), and a stage returned to keeps its
    earlier peak (train -> validate -> train)."""
    from fluxtui.trainer.memory import StageMeter, peak_rss_mb

    meter = StageMeter(None)  # no CUDA: RSS only
    meter.enter("train")
    block = bytearray(300 * 2**20)  # touched pages: RSS grows by ~300 MiB
    for i in range(0, len(block), 4096):
        block[i] = 1
    high = meter.figures()["rss_peak_mb"]
    del block
    meter.enter("validate")
    if peak_rss_mb() > high - 150:
        pytest.skip("this kernel does not reset VmHWM through /proc/self/clear_refs")
    assert meter.figures()["rss_peak_mb"] < high - 150
    meter.enter("train")
    assert meter.figures()["rss_peak_mb"] >= high - 2  # the first visit's peak is kept (the kernel updates it lazily)
    assert set(meter.figures("validate")) == {"rss_peak_mb"}
    meter.close()
