"""Overview: what the project trains, what is wrong with it, whether it fits the GPU, and
the buttons that start and stop the trainer."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from fluxtui.core.schema import FLAVOURS

from ..widgets.problem_list import ProblemList
from ..widgets.text_update import show_text
from .base import FluxScreen, RunControls


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def project_summary(state, workspace_name: str) -> Text:
    p = state.project
    text = Text()
    if p is None:
        if not state.loaded:
            return Text("reading project.toml…", style="dim")
        text.append("project.toml has errors", style="bold red")
        text.append("\nfix them below (enter jumps to the line) or press 2 for the editor")
        return text
    m, lo, t, v = p.model, p.lora, p.training, p.validation

    def row(label: str, value: str, style: str = "") -> None:
        text.append(f"{label:<9}", style="dim")
        text.append(value + "\n", style=style)

    text.append(f"{p.project.name}", style="bold")
    text.append(f"  ({workspace_name})\n", style="dim")
    flavour = m.model_flavour
    source = m.pretrained_model_name_or_path or FLAVOURS.get(flavour) or "built from config"
    row("model", f"{flavour} · {source}")
    if flavour == "tiny-random":
        row("", "toy size, random weights: learns shapes and colours, nothing useful", "yellow")
    elif m.random_weights:
        row("", "random weights: for measuring memory and speed only", "yellow")
    row(
        "weights", f"{m.base_model_precision} · text encoders {m.text_encoder_1_precision}/{m.text_encoder_2_precision}"
    )
    alpha = lo.lora_alpha if lo.lora_alpha is not None else lo.lora_rank
    row("LoRA", f"{lo.lora_type} · rank {lo.lora_rank} · alpha {_num(alpha)} · target {lo.flux_lora_target}")
    steps = f"{t.max_train_steps} steps" if t.max_train_steps else f"{t.num_train_epochs} epochs"
    row(
        "training",
        f"batch {t.train_batch_size}×{t.gradient_accumulation_steps} · {steps} · lr {_num(t.learning_rate)} "
        f"{t.lr_scheduler} · {t.optimizer}",
    )
    ckpt = f"every {t.checkpointing_steps}" if t.checkpointing_steps else "at the end"
    val = f"every {v.validation_steps}" if v.validation_steps else "off"
    row("saving", f"checkpoints {ckpt} (keep {t.checkpoints_total_limit or 'all'}) · validation {val}")
    if state.scanned:
        parts = []
        for r in state.datasets:
            parts.append(f"{r.id}: {len(r.images)} images, {r.batches_per_epoch} batches/epoch")
        row("datasets", "; ".join(parts) or "none active")
    else:
        row("datasets", "scanning…", "dim")
    text.rstrip()
    return text


def memory_summary(state) -> Text:
    text = Text()
    est = state.estimate
    gpus = state.gpus
    if est is not None:
        text.append(f"estimate {est.total_gib:.1f} GiB", style="bold")
        if est.seconds_per_step:
            text.append(f" · ~{est.seconds_per_step:.1f} s/step")
        biggest = sorted(est.breakdown.items(), key=lambda kv: -kv[1])[:3]
        text.append("\n" + " · ".join(f"{k} {v:.1f}" for k, v in biggest), style="dim")
    elif state.project is not None:
        text.append("estimating…", style="dim")
    if gpus:
        g = gpus[0]
        gb = g.total_mb / 1024
        text.append(f"\nGPU {g.index} {g.name} · {gb:.0f} GiB ({g.used_mb / 1024:.1f} in use)")
        if len(gpus) > 1:
            text.append(f" +{len(gpus) - 1} more", style="dim")
        if est is not None:
            if est.fits(gb):
                text.append("\nfits", style="bold green")
            else:
                text.append("\ndoes not fit", style="bold red")
                for s in state.suggestions:
                    text.append(f"\n  try {s.describe()} → {s.total_gib:.1f} GiB", style="yellow")
    else:
        text.append("\nno GPU detected: training would run on the CPU", style="dim")
    return text


def run_summary(state) -> Text:
    text = Text()
    run = state.active or (state.runs[-1] if state.runs else None)
    if run is None:
        text.append("no runs yet; press s to start training", style="dim")
        return text
    live = run is state.active
    style = {"running": "bold green", "starting": "bold green", "completed": "bold", "failed": "bold red"}.get(
        run.status, "bold red" if run.status == "crashed" else "bold"
    )
    text.append(f"{run.run_id}  ", style="dim")
    text.append(run.status, style=style)
    if run.step is not None:
        total = f"/{run.total_steps}" if run.total_steps else ""
        text.append(f"\nstep {run.step}{total}", style="bold")
    if run.last_loss is not None:
        text.append(f" · loss {run.last_loss:.4f}")
    if run.stage and live and run.stage != "train":
        text.append(f"\nstage {run.stage}")
    if run.error:
        text.append(f"\n{run.error}", style="red")
    elif run.exit_detail and run.status == "crashed":
        text.append(f"\n{run.exit_detail}", style="red")
    if state.last_change:
        text.append(f"\n{state.last_change}", style="dim")
    text.append(f"\nrestart on change: {'on' if state.auto_restart else 'off'} (a)", style="dim")
    return text


class OverviewScreen(RunControls, FluxScreen):
    MODE = "overview"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "run('start')", "Start", id="run.start"),
        Binding("x", "run('stop')", "Stop", id="run.stop"),
        Binding("r", "run('restart')", "Restart", id="run.restart"),
        Binding("a", "app.toggle_auto_restart", "Auto-restart", id="run.auto_restart", show=False),
        Binding("m", "app.switch_mode('monitor')", "Monitor", id="overview.monitor", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="ov-body"):
            with Horizontal(id="ov-top"):
                yield Static(id="ov-project", classes="panel")
                with Vertical(id="ov-side"):
                    yield Static(id="ov-run", classes="panel")
                    with Horizontal(id="ov-buttons"):
                        yield Button("Start", id="btn-start", variant="success", compact=True)
                        yield Button("Stop", id="btn-stop", variant="error", compact=True)
                        yield Button("Restart", id="btn-restart", compact=True)
                    yield Static(id="ov-memory", classes="panel")
            yield ProblemList(id="ov-problems")

    def on_mount(self) -> None:
        self.query_one("#ov-project").border_title = "Project"
        self.query_one("#ov-run").border_title = "Run"
        self.query_one("#ov-memory").border_title = "Memory"
        super().on_mount()
        self.query_one(ProblemList).focus()

    def on_state(self, topic: str) -> None:
        s = self.state
        name = self.fapp.workspace.root.name
        if topic in ("all", "project", "datasets"):
            show_text(self.query_one("#ov-project", Static), project_summary(s, name))
            problems = self.query_one(ProblemList)
            problems.show(s.all_problems)
            errors = sum(p.is_error for p in s.all_problems)
            warnings = len(s.all_problems) - errors
            problems.border_title = f"Problems: {errors} errors, {warnings} warnings (enter: go to the key)"
        if topic in ("all", "project", "estimate", "gpu"):
            show_text(self.query_one("#ov-memory", Static), memory_summary(s))
        if topic in ("all", "runs", "busy", "change"):
            show_text(self.query_one("#ov-run", Static), run_summary(s))
            active = s.active is not None
            self.query_one("#btn-start", Button).disabled = active or bool(s.busy)
            self.query_one("#btn-stop", Button).disabled = not active or bool(s.busy)
            self.query_one("#btn-restart", Button).disabled = not active or bool(s.busy)

    async def on_problem_list_jump(self, msg: ProblemList.Jump) -> None:
        p = msg.problem
        if p.key or p.line:
            await self.fapp.jump_to_key(p.key, p.line)
        elif p.path:
            await self.fapp.switch_mode("datasets")
