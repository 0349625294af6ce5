"""Cross-field rules: each one names its key, the line in project.toml, and a fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fluxtui.core import config, rules

DATASET = """
[[datasets]]
id = "imgs"
instance_data_dir = "datasets/imgs"
resolution = 512
resolution_type = "pixel"
"""


def load(tmp_path: Path, text: str, *, dataset: bool = True) -> config.Project:
    if dataset and "[[datasets]]" not in text:
        text = text.strip() + "\n" + DATASET
    (tmp_path / "project.toml").write_text(text, encoding="utf-8")
    project, problems = config.load(tmp_path / "project.toml")
    assert project is not None, problems
    return project


def line_of(project: config.Project, start: str) -> int:
    (n,) = [n for n, line in enumerate(project.text.splitlines(), 1) if line.startswith(start)]
    return n


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch):
    """Rules that look at the GPUs see none, as on this machine, unless a test says so."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def one_gpu(monkeypatch):
    """One CUDA GPU visible: the config alone decides (no "would train on the CPU" warning)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")


def test_a_plain_project_has_no_problems(tmp_path, one_gpu):
    assert rules.check(load(tmp_path, "[project]\nname = 'x'")) == []


def test_a_full_size_flavour_without_cuda_warns_that_it_would_train_on_the_cpu(tmp_path):
    (problem,) = rules.check(load(tmp_path, "[project]\nname = 'x'"))
    assert problem.key == "model.model_flavour" and problem.severity == "warning"
    assert "would train on the CPU" in problem.message and "nvidia-smi" in problem.fix
    assert rules.check(load(tmp_path, '[model]\nmodel_flavour = "tiny-random"')) == []


# (id, project.toml text, expected key, severity, the line it points at: the start of that line
# in the file, or None when the key and its table are not written)
CASES = [
    (
        "group offload + model cpu offload",
        "[memory]\nenable_group_offload = true\nenable_model_cpu_offload = true",
        "memory.enable_model_cpu_offload",
        "error",
        "enable_model_cpu_offload",
    ),
    (
        "loftq with quanto",
        '[model]\nbase_model_precision = "int4-quanto"\n[lora]\nlora_init_type = "loftq"',
        "lora.lora_init_type",
        "error",
        "lora_init_type",
    ),
    (
        "nf4 + torch_compile",
        '[model]\nbase_model_precision = "nf4-bnb"\n[training]\ntorch_compile = true',
        "training.torch_compile",
        "error",
        "torch_compile",
    ),
    (
        "auto shift with a written shift",
        "[training]\nflow_schedule_shift = 3.0\nflow_schedule_auto_shift = true",
        "training.flow_schedule_shift",
        "error",
        "flow_schedule_shift =",
    ),
    (
        "gradient checkpointing off",
        "[training]\ngradient_checkpointing = false",
        "training.gradient_checkpointing",
        "warning",
        "gradient_checkpointing",
    ),
    ("lr too high", "[training]\nlearning_rate = 5e-3", "training.learning_rate", "warning", "learning_rate"),
    ("lr too low", "[training]\nlearning_rate = 1e-6", "training.learning_rate", "warning", "learning_rate"),
    (
        "prodigy wants lr 1.0",
        '[training]\noptimizer = "prodigy"\nlearning_rate = 1e-4',
        "training.learning_rate",
        "warning",
        "learning_rate",
    ),
    (
        "all+ffs in diffusers format (line of the target: lora_format is not written)",
        '[lora]\nflux_lora_target = "all+ffs"',
        "lora.lora_format",
        "warning",
        "flux_lora_target",
    ),
    (
        "no steps and no epochs",
        "[training]\nmax_train_steps = 0\nnum_train_epochs = 0",
        "training.max_train_steps",
        "error",
        "max_train_steps",
    ),
    (
        "instanceprompt without instance_prompt (line of caption_strategy)",
        '[project]\nname = "x"\n' + DATASET + 'caption_strategy = "instanceprompt"',
        "datasets[0].instance_prompt",
        "error",
        'caption_strategy = "instanceprompt"',
    ),
    (
        "instance_prompt without instanceprompt",
        '[project]\nname = "x"\n' + DATASET + 'instance_prompt = "sks"',
        "datasets[0].instance_prompt",
        "warning",
        "instance_prompt",
    ),
    (
        "fluxbooru without real cfg",
        '[model]\nmodel_flavour = "fluxbooru"\n[validation]\nvalidation_guidance_real = 1.0',
        "validation.validation_guidance_real",
        "warning",
        "validation_guidance_real",
    ),
    (
        "libreflux without masking (line of the [training] table)",
        '[model]\nmodel_flavour = "libreflux"\n[training]\nseed = 1',
        "training.flux_attention_masked_training",
        "warning",
        "[training]",
    ),
    (
        "guidance > 1 without real cfg (line of flux_guidance_value)",
        "[training]\nflux_guidance_value = 3.5",
        "validation.validation_guidance_real",
        "warning",
        "flux_guidance_value",
    ),
    (
        "pissa on a quantised base",
        '[model]\nbase_model_precision = "int8-quanto"\n[lora]\nlora_init_type = "pissa"',
        "lora.lora_init_type",
        "error",
        "lora_init_type",
    ),
    (
        "olora on the full-size model without CUDA",
        '[model]\nbase_model_precision = "no_change"\n[lora]\nlora_init_type = "olora"',
        "lora.lora_init_type",
        "error",
        "lora_init_type",
    ),
    (
        "loftq without CUDA",
        '[model]\nbase_model_precision = "no_change"\nmodel_flavour = "tiny-random"\n[lora]\nlora_init_type = "loftq"',
        "lora.lora_init_type",
        "error",
        "lora_init_type",
    ),
    (
        "init_lora with lycoris",
        '[lora]\nlora_type = "lycoris"\ninit_lora = "old.safetensors"',
        "lora.init_lora",
        "error",
        "init_lora",
    ),
    (
        "crop_aspect random without crop_aspect_buckets (line of crop_aspect)",
        '[project]\nname = "x"\n' + DATASET + 'crop = true\ncrop_aspect = "random"',
        "datasets[0].crop_aspect_buckets",
        "error",
        "crop_aspect",
    ),
    (
        "crop_aspect without crop",
        '[project]\nname = "x"\n' + DATASET + 'crop_aspect = "preserve"',
        "datasets[0].crop_aspect",
        "warning",
        "crop_aspect",
    ),
    (
        "guidance rescale without real cfg",
        "[validation]\nvalidation_guidance_rescale = 0.7",
        "validation.validation_guidance_rescale",
        "warning",
        "validation_guidance_rescale",
    ),
    (
        "user_prompt_library that is not there",
        '[validation]\nuser_prompt_library = "library.json"',
        "validation.user_prompt_library",
        "error",
        "user_prompt_library",
    ),
    (
        "random-range guidance above 1 without real cfg",
        '[training]\nflux_guidance_mode = "random-range"\nflux_guidance_max = 4.0',
        "validation.validation_guidance_real",
        "warning",
        "flux_guidance_max",
    ),
    (
        "random-range guidance with min above max",
        '[training]\nflux_guidance_mode = "random-range"\nflux_guidance_min = 3.0\nflux_guidance_max = 1.0',
        "training.flux_guidance_min",
        "error",
        "flux_guidance_min",
    ),
    (
        "wandb without a login",
        '[logging]\nreport_to = "wandb"',
        "logging.report_to",
        "error",
        "report_to",
    ),
    (
        "push_to_hub without a hub token",
        '[hub]\npush_to_hub = true\nhub_model_id = "me/lora"',
        "hub.push_to_hub",
        "error",
        "push_to_hub",
    ),
    (
        "push_checkpoints_to_hub without a hub token",
        '[hub]\npush_checkpoints_to_hub = true\nhub_model_id = "me/lora"',
        "hub.push_checkpoints_to_hub",
        "error",
        "push_checkpoints_to_hub",
    ),
    (
        "group offload stream without CUDA",
        "[memory]\nenable_group_offload = true\ngroup_offload_use_stream = true",
        "memory.group_offload_use_stream",
        "warning",
        "group_offload_use_stream",
    ),
    (
        "group offload stream without group offload",
        "[memory]\ngroup_offload_use_stream = true",
        "memory.group_offload_use_stream",
        "warning",
        "group_offload_use_stream",
    ),
    (
        "offload to disk without group offload",
        '[memory]\ngroup_offload_to_disk_path = "/tmp/x"',
        "memory.group_offload_to_disk_path",
        "warning",
        "group_offload_to_disk_path",
    ),
    (
        "lokr on an nf4 base",
        '[model]\nbase_model_precision = "nf4-bnb"\n[lora]\nlora_type = "lycoris"',
        "lora.lora_type",
        "error",
        "lora_type",
    ),
    (
        "sageattention is not installed",
        '[training]\nattention_mechanism = "sageattention"',
        "training.attention_mechanism",
        "error",
        "attention_mechanism",
    ),
    ("wandb is not installed", '[logging]\nreport_to = "wandb"', "logging.report_to", "error", "report_to"),
    (
        "push_to_hub without hub_model_id (line of push_to_hub)",
        "[hub]\npush_to_hub = true",
        "hub.hub_model_id",
        "error",
        "push_to_hub",
    ),
    (
        "tread index past the 57 blocks",
        "[training]\ntread_config = { routes = [{ selection_ratio = 0.5, start_layer_idx = 2, end_layer_idx = 60 }] }",
        "training.tread_config",
        "error",
        "tread_config",
    ),
    (
        "tread start after end",
        "[training]\ntread_config = { routes = [{ selection_ratio = 0.5, start_layer_idx = -3, end_layer_idx = 5 }] }",
        "training.tread_config",
        "error",
        "tread_config",
    ),
    (
        "validation resolution not a multiple of 16",
        '[validation]\nvalidation_resolution = ["1024x1024", "1000x768"]',
        "validation.validation_resolution",
        "error",
        "validation_resolution",
    ),
    (
        "init_lora missing",
        '[lora]\ninit_lora = "old/pytorch_lora_weights.safetensors"',
        "lora.init_lora",
        "error",
        "init_lora",
    ),
    (
        "accelerate_config missing",
        '[hardware]\naccelerate_config = "accelerate.yaml"',
        "hardware.accelerate_config",
        "error",
        "accelerate_config",
    ),
    (
        "fp16 overflows",
        '[training]\nmixed_precision = "fp16"',
        "training.mixed_precision",
        "warning",
        "mixed_precision",
    ),
    (
        "warmup longer than the run",
        "[training]\nmax_train_steps = 50\nlr_warmup_steps = 100\n[validation]\nvalidation_steps = 0",
        "training.lr_warmup_steps",
        "warning",
        "lr_warmup_steps",
    ),
    (
        "validation never runs before the end",
        "[training]\nmax_train_steps = 50\nlr_warmup_steps = 0\n[validation]\nvalidation_steps = 100",
        "validation.validation_steps",
        "warning",
        "validation_steps",
    ),
    (
        "validation without a prompt",
        '[validation]\nvalidation_prompt = ""',
        "validation.validation_prompt",
        "warning",
        "validation_prompt",
    ),
    (
        "schnell with 512 tokens",
        '[model]\nmodel_flavour = "schnell"\ntokenizer_max_length = 512',
        "model.tokenizer_max_length",
        "error",
        "tokenizer_max_length",
    ),
    (
        "lokr_factor on a standard LoRA",
        "[lora]\nlokr_factor = 8",
        "lora.lokr_factor",
        "warning",
        "lokr_factor",
    ),
    (
        "machine rank past the machines",
        "[hardware]\nnum_machines = 2\nmachine_rank = 2\nnum_processes = 2",
        "hardware.machine_rank",
        "error",
        "machine_rank",
    ),
    (
        "fewer processes than machines",
        "[hardware]\nnum_machines = 2\nnum_processes = 1",
        "hardware.num_processes",
        "error",
        "num_processes",
    ),
    (
        "more processes than listed GPUs",
        "[hardware]\nnum_processes = 4\ngpu_ids = [0, 1]",
        "hardware.num_processes",
        "warning",
        "num_processes",
    ),
    (
        "resume from a folder that is not there",
        '[training]\nresume_from_checkpoint = "outputs/x/checkpoints/checkpoint-5"',
        "training.resume_from_checkpoint",
        "error",
        "resume_from_checkpoint",
    ),
    (
        "area resolution in pixels",
        '[project]\nname = "x"\n' + DATASET.replace('"pixel"', '"area"').replace("512", "1024"),
        "datasets[0].resolution_type",
        "error",
        'resolution_type = "area"',
    ),
    (
        "pixel resolution in megapixels",
        '[project]\nname = "x"\n' + DATASET.replace("512", "1.0"),
        "datasets[0].resolution",
        "error",
        "resolution = 1.0",
    ),
    (
        "maximum_image_size without target_downsample_size",
        '[project]\nname = "x"\n' + DATASET + "maximum_image_size = 2048",
        "datasets[0].target_downsample_size",
        "warning",
        "maximum_image_size",
    ),
    (
        "downsample that upscales",
        '[project]\nname = "x"\n' + DATASET + "maximum_image_size = 1024\ntarget_downsample_size = 2048",
        "datasets[0].target_downsample_size",
        "warning",
        "target_downsample_size",
    ),
]


@pytest.mark.parametrize(("text", "key", "severity", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(tmp_path, monkeypatch, text, key, severity, line):
    for absent in ("wandb", "sageattention"):  # hidden from the import system, as if never installed
        monkeypatch.setitem(sys.modules, absent, None)
    project = load(tmp_path, text)
    found = [p for p in rules.check(project) if p.key == key]
    assert len(found) == 1, rules.check(project)
    (problem,) = found
    assert problem.severity == severity
    assert problem.line == (line_of(project, line) if line else None)
    assert problem.fix and problem.file == "project.toml"
    assert str(problem).startswith(f"project.toml:{problem.line}: {key}: ")


@pytest.mark.parametrize(
    "text",
    [
        '[model]\nbase_model_precision = "no_change"\n[lora]\nlora_init_type = "loftq"',
        "[training]\nflow_schedule_auto_shift = true",
        '[training]\noptimizer = "prodigy"\nlearning_rate = 1.0',
        '[lora]\nflux_lora_target = "all+ffs"\nlora_format = "comfyui"',
        '[logging]\nreport_to = "tensorboard"',
        "[training]\ntread_config = { routes = [{ selection_ratio = 0.5, start_layer_idx = 2, end_layer_idx = -2 }] }",
        '[model]\nmodel_flavour = "tiny-random"\n'
        "[training]\ntread_config = { routes = [{ selection_ratio = 0.5, start_layer_idx = 2, end_layer_idx = 90 }] }",
        '[model]\nmodel_flavour = "fluxbooru"\n[validation]\nvalidation_guidance_real = 3.5',
        '[model]\nmodel_flavour = "libreflux"\n[training]\nflux_attention_masked_training = true',
        '[validation]\nvalidation_resolution = ["1024x1024", "1280x768"]',
        "[training]\nmax_train_steps = 0\nnum_train_epochs = 3\nlr_warmup_steps = 0\n[validation]\nvalidation_steps = 0",
    ],
)
def test_rule_is_quiet_when_the_config_is_right(tmp_path, text, one_gpu):
    assert rules.check(load(tmp_path, text)) == []


def lora_file(path: Path, rank: int = 16, kind: str = "diffusers") -> Path:
    """A safetensors file with LoRA-shaped tensors (zeros): only the header matters here."""
    import json
    import struct

    a, b = (".lora_A.weight", ".lora_B.weight") if kind == "diffusers" else (".lora_down.weight", ".lora_up.weight")
    names = {
        "transformer.transformer_blocks.0.attn.to_q" + a: [rank, 8],
        "transformer.transformer_blocks.0.attn.to_q" + b: [8, rank],
    }
    if kind == "lokr":
        names = {"lycoris_transformer_blocks_0_attn_to_q.lokr_w1": [4, 4]}
    header, offset = {}, 0
    for name, shape in names.items():
        size = 2 * shape[0] * shape[1]
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    body = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(body)) + body + bytes(offset))
    return path


def test_existing_files_pass(tmp_path, one_gpu):
    lora_file(tmp_path / "old/l.safetensors")
    (tmp_path / "accelerate.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    (tmp_path / "ckpt").mkdir()
    text = (
        '[lora]\ninit_lora = "old/l.safetensors"\n[hardware]\naccelerate_config = "accelerate.yaml"\n'
        '[training]\nresume_from_checkpoint = "ckpt"'
    )
    assert rules.check(load(tmp_path, text)) == []


def test_stream_is_quiet_with_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    text = "[memory]\nenable_group_offload = true\ngroup_offload_use_stream = true"
    assert rules.check(load(tmp_path, text)) == []


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    """Hide site-packages from the import system (never imported, only looked up)."""
    for name in ("optimi", "lycoris", "optimum", "bitsandbytes", "tensorboard"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    text = (
        '[model]\nbase_model_precision = "nf4-bnb"\ntext_encoder_2_precision = "int8-quanto"\n'
        '[lora]\nlora_type = "lycoris"\n[training]\noptimizer = "optimi-lion"\n'
        '[logging]\nreport_to = "tensorboard"'
    )
    project = load(tmp_path, text)
    found = {p.key: p for p in rules.check(project) if p.is_error}
    expected = {
        "training.optimizer": "pip install torch-optimi",
        "lora.lora_type": "pip install lycoris-lora",
        "model.base_model_precision": "pip install bitsandbytes",
        "model.text_encoder_2_precision": "pip install optimum-quanto",
        "logging.report_to": "pip install tensorboard",
    }
    assert set(found) == set(expected)
    for key, fix in expected.items():
        assert found[key].fix.startswith(fix)
        assert found[key].line == line_of(project, key.split(".")[1])


def test_datasets_present_and_active(tmp_path, one_gpu):
    (problem,) = rules.check(load(tmp_path, '[project]\nname = "x"', dataset=False))
    assert problem.key == "datasets" and problem.is_error and problem.line is None

    project = load(tmp_path, '[project]\nname = "x"\n' + DATASET + "disabled = true")
    (problem,) = [p for p in rules.check(project) if p.key.startswith("datasets")]
    assert problem.key == "datasets[0].disabled" and problem.is_error

    project = load(tmp_path, DATASET.strip() + "\nis_regularisation_data = true", dataset=False)
    (problem,) = rules.check(project)
    assert problem.key == "datasets[0].is_regularisation_data"
    assert problem.line == line_of(project, "is_regularisation_data")

    project = load(tmp_path, DATASET.strip() + "\nprobability = 0.0", dataset=False)
    (problem,) = rules.check(project)
    assert problem.key == "datasets[0].probability" and problem.line == line_of(project, "probability")


def test_check_all_adds_the_scan(tmp_path, one_gpu):
    project = load(tmp_path, "[training]\ngradient_checkpointing = false")
    reports, problems = rules.check_all(project)
    assert [r.id for r in reports] == ["imgs"]
    assert {p.key for p in problems} == {"training.gradient_checkpointing", "datasets[0].instance_data_dir"}


def test_process_count(tmp_path, monkeypatch):
    assert rules.process_count(load(tmp_path, "[hardware]\nnum_processes = 3")) == 3
    assert rules.process_count(load(tmp_path, "[hardware]\ngpu_ids = [0, 2]\nnum_machines = 2")) == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert rules.process_count(load(tmp_path, "[hardware]\nnum_machines = 1")) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert rules.process_count(load(tmp_path, "[hardware]\nnum_machines = 1")) == 1


# -- init_lora, read from the safetensors header -----------------------------------------------


@pytest.mark.parametrize(
    ("rank", "kind", "says", "fix"),
    [
        (8, "diffusers", "has rank 8 but lora_rank = 16", "set lora_rank = 8"),
        (4, "kohya", "has rank 4 but lora_rank = 16", "set lora_rank = 4"),
        (16, "lokr", "holds a LyCORIS LoKr", "use a LoRA saved by fluxtui"),
    ],
)
def test_init_lora_rank_and_format_come_from_the_header(tmp_path, one_gpu, rank, kind, says, fix):
    lora_file(tmp_path / "old.safetensors", rank=rank, kind=kind)
    project = load(tmp_path, '[lora]\ninit_lora = "old.safetensors"')
    (problem,) = rules.check(project)
    assert problem.key == "lora.init_lora" and problem.is_error
    assert says in problem.message and problem.fix.startswith(fix)
    assert problem.line == line_of(project, "init_lora")


def test_init_lora_that_is_not_safetensors(tmp_path, one_gpu):
    (tmp_path / "old.safetensors").write_bytes(b"x")
    (problem,) = rules.check(load(tmp_path, '[lora]\ninit_lora = "old.safetensors"'))
    assert problem.key == "lora.init_lora" and "too short to be a safetensors file" in problem.message


# -- services: wandb login and hub token -------------------------------------------------------


def test_wandb_login_from_netrc_key_or_offline_mode(tmp_path, one_gpu, monkeypatch):
    text = '[logging]\nreport_to = "wandb"'
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert [p.key for p in rules.check(load(tmp_path, text)) if "wandb" in p.message] == ["logging.report_to"]
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / "netrc").chmod(0o600)
    assert not [p for p in rules.check(load(tmp_path, text)) if "logged in" in p.message]
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert not [p for p in rules.check(load(tmp_path, text)) if "logged in" in p.message]
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert not [p for p in rules.check(load(tmp_path, text)) if "logged in" in p.message]


@pytest.fixture
def hub(monkeypatch):
    """A local stand-in for the hub's whoami endpoint: hub.role / hub.status set the answer."""
    import http.server
    import json
    import threading

    state = {"role": "write", "status": 200, "seen": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the http.server API names it
            state["seen"].append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"name": "me", "auth": {"accessToken": {"role": state["role"]}}}).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(rules.services, "WHOAMI_TIMEOUT", 30.0)  # a busy machine is not an offline hub
    yield state
    server.shutdown()


HUB = '[hub]\npush_to_hub = true\nhub_model_id = "me/lora"'


def test_hub_write_token_is_quiet(tmp_path, one_gpu, hub):
    assert rules.check(load(tmp_path, HUB)) == []
    assert hub["seen"] == [("/api/whoami-v2", "Bearer hf_test_token")]


def test_hub_read_only_or_refused_token_is_an_error(tmp_path, one_gpu, hub):
    hub["role"] = "read"
    (problem,) = rules.check(load(tmp_path, HUB))
    assert problem.key == "hub.push_to_hub" and problem.is_error and "read-only" in problem.message
    assert "write token" in problem.fix
    hub["status"] = 401
    (problem,) = rules.check(load(tmp_path, HUB))
    assert problem.is_error and "refuses this machine's token" in problem.message


def test_hub_token_from_the_login_file_offline_is_a_warning(tmp_path, one_gpu, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_from_login\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (problem,) = rules.check(load(tmp_path, HUB))
    assert problem.key == "hub.push_to_hub" and problem.severity == "warning"
    assert "cannot be reached" in problem.message


def test_fluxbooru_trains_at_guidance_3_5_unless_told(tmp_path):
    from fluxtui.core.schema import flux_guidance_value

    project = load(tmp_path, '[model]\nmodel_flavour = "fluxbooru"')
    assert flux_guidance_value(project.training, "fluxbooru") == 3.5
    assert flux_guidance_value(project.training, "dev") == 1.0
    project = load(tmp_path, '[model]\nmodel_flavour = "fluxbooru"\n[training]\nflux_guidance_value = 2.0')
    assert flux_guidance_value(project.training, "fluxbooru") == 2.0
