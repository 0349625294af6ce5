"""core/launch.py: the trainer command for each [hardware] combination (built, not run;
tests/test_cli_run.py runs a real two-process CPU training)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fluxtui.core import config, launch, workspace

WS = Path("/work/ws")


def hw(**kw) -> SimpleNamespace:
    base = dict(
        num_processes="auto",
        gpu_ids=[],
        num_machines=1,
        machine_rank=0,
        main_process_ip="127.0.0.1",
        main_process_port=29500,
        accelerate_config=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def build(h, gpus, **kw):
    return launch.build(h, WS, "r1", gpu_count=gpus, base_env={}, **kw)


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_one_process_is_plain_python():
    for h, gpus in [(hw(), 0), (hw(), 1), (hw(num_processes=1), 4), (hw(gpu_ids=[2]), 4)]:
        cmd = build(h, gpus)
        assert cmd.argv == [sys.executable, "-m", "fluxtui.trainer", str(WS), "--run", "r1"]
        assert not cmd.uses_accelerate and cmd.num_processes == 1
        assert cmd.env["PYTHONUNBUFFERED"] == "1"
    assert build(hw(gpu_ids=[2]), 4).env["CUDA_VISIBLE_DEVICES"] == "2"


def test_trainer_flags_pass_through():
    cmd = build(hw(), 0, fresh=True, resume="/x/checkpoint-5", max_steps=7)
    assert cmd.argv[3:] == [str(WS), "--run", "r1", "--fresh", "--resume", "/x/checkpoint-5", "--max-steps", "7"]
    two = build(hw(num_processes=2), 0, fresh=True)
    assert two.argv[-5:] == ["fluxtui.trainer", str(WS), "--run", "r1", "--fresh"]


def test_auto_uses_every_visible_gpu():
    cmd = build(hw(), 4, mixed_precision="bf16")
    assert cmd.uses_accelerate and cmd.num_processes == 4
    assert cmd.argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert after(cmd.argv, "--num_processes") == "4" and "--multi_gpu" in cmd.argv
    assert after(cmd.argv, "--mixed_precision") == "bf16"
    assert "ACCELERATE_USE_CPU" not in cmd.env and "--cpu" not in cmd.argv
    assert cmd.argv[cmd.argv.index("-m", 3) + 1] == "fluxtui.trainer"  # --module, same interpreter
    assert any("auto -> 4" in n for n in cmd.notes)


def test_gpu_ids_limit_processes_and_set_visible_devices():
    cmd = build(hw(gpu_ids=[1, 3]), 4)
    assert cmd.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert cmd.num_processes == 2 and after(cmd.argv, "--num_processes") == "2"


def test_cpu_only_several_processes_get_gloo_ranks():
    cmd = build(hw(num_processes=2), 0, mixed_precision="bf16")
    assert cmd.env["ACCELERATE_USE_CPU"] == "true"
    assert "--multi_gpu" in cmd.argv and "--cpu" not in cmd.argv  # --cpu alone runs ONE process
    assert after(cmd.argv, "--num_processes") == "2"
    assert after(cmd.argv, "--mixed_precision") == "no"


def test_several_machines():
    h = hw(num_processes=16, num_machines=2, machine_rank=1, main_process_ip="10.0.0.5", main_process_port=1234)
    cmd = build(h, 8)
    argv = cmd.argv
    assert after(argv, "--num_machines") == "2" and after(argv, "--machine_rank") == "1"
    assert after(argv, "--main_process_ip") == "10.0.0.5" and after(argv, "--main_process_port") == "1234"
    assert after(argv, "--num_processes") == "16" and "--multi_gpu" in argv
    auto = build(hw(num_machines=2), 8)
    assert after(auto.argv, "--num_processes") == "16"  # accelerate counts processes over all machines


def test_accelerate_config_passes_through():
    cmd = build(hw(accelerate_config="ds.yaml"), 1)
    assert cmd.uses_accelerate  # DeepSpeed on one GPU still goes through accelerate
    assert after(cmd.argv, "--config_file") == str(WS / "ds.yaml")
    assert "--multi_gpu" not in cmd.argv  # the file says which distributed type
    absolute = build(hw(accelerate_config="/etc/fsdp.yaml", num_processes=4), 4)
    assert after(absolute.argv, "--config_file") == "/etc/fsdp.yaml"
    assert after(absolute.argv, "--num_processes") == "4"


def test_arguments_are_a_list_of_strings_even_with_odd_paths():
    cmd = launch.build(hw(num_processes=2), Path("/tmp/my ws; rm -rf ~"), "r1", gpu_count=0, base_env={})
    assert all(isinstance(a, str) for a in cmd.argv)
    assert "/tmp/my ws; rm -rf ~" in cmd.argv


def test_trainer_module_can_be_replaced_for_tests():
    cmd = launch.build(hw(), WS, "r1", gpu_count=0, base_env={launch.TRAINER_ENV: "my_trainer"})
    assert cmd.argv[1:3] == ["-m", "my_trainer"]


def test_for_project_reads_hardware(tmp_path):
    ws = workspace.init(tmp_path / "ws", demo=True)
    config.set_values(ws.project_file, {"hardware.num_processes": 2, "hardware.main_process_port": 29611})
    project = config.load_or_raise(ws.project_file)
    cmd = launch.for_project(project, ws.root, "r9", gpu_count=0)
    assert cmd.num_processes == 2 and after(cmd.argv, "--main_process_port") == "29611"


@pytest.mark.parametrize("n", [1, 2])
def test_accelerate_parses_the_command(n):
    """accelerate's own parser accepts what we build (catches renamed flags)."""
    from accelerate.commands.launch import launch_command_parser

    cmd = build(hw(num_processes=n + 1, num_machines=n, main_process_ip="10.0.0.1"), 0)
    args = launch_command_parser().parse_args(cmd.argv[3:])
    assert args.module and args.training_script == "fluxtui.trainer"
    assert args.num_processes == n + 1 and args.multi_gpu
