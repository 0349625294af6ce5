"""The training process, top to bottom: setup, the loop, the end.

setup: the frozen config and its checks, accelerate, the caches (text encoders, then the VAE,
       each loaded only when needed and freed), the transformer and its LoRA, the optimizer
       and lr schedule, the resume.
loop:  one optimizer step = gradient_accumulation_steps batches per process; after each
       step the `step` event, then checkpoints, validation and control requests.
end:   the final LoRA, its model card, trackers closed, the hub upload.

Flow-matching math lives in flow.py, the batch stream in data.py, the caches in caches.py,
block-level tricks (TREAD, checkpointing interval) in blocks.py, config/accelerate/option
plumbing in setup.py, events and log lines in telemetry.py.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxtui import __version__
from fluxtui.core import checkpoints as core_checkpoints
from fluxtui.core.schema import FLOW_SCHEDULE_SHIFT, flux_guidance_value
from fluxtui.core.workspace import Workspace

from . import setup, telemetry
from .control import Control
from .telemetry import Telemetry, rss_mb


@dataclass
class Progress:
    """Where the run is; read by the signal handler when it has to end the run at once."""

    step: int = 0
    position: int = 0  # batches consumed by all processes together
    epoch: int = 1
    losses: list[float] = field(default_factory=list)


def train(
    workspace: str | os.PathLike,
    run_id: str,
    *,
    fresh: bool = False,
    resume: str | None = None,
    max_steps: int | None = None,
) -> int:
    """Run the trainer; returns the process exit status (0 completed/stopped, 1 failed)."""
    ws = Workspace.at(workspace)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    tel = Telemetry(run_dir, run_id, main=rank == 0, rank=rank)
    progress = Progress()
    control = Control(run_dir, main=rank == 0)

    def exit_now(signal_name: str) -> None:
        tel.emit(
            "run.end",
            status="stopped",
            step=progress.step,
            error=f"{signal_name} received twice: exited at once, without a checkpoint",
            traceback_tail=None,
        )

    control.install_signal_handlers(exit_now)
    try:
        status = _train(ws, run_dir, run_id, tel, control, progress, fresh=fresh, resume=resume, max_steps=max_steps)
    except Exception as exc:
        message, tail = setup.describe_failure(exc)
        tel.log(f"error: {message}", all_ranks=True)
        if tail:
            tel.log(tail, all_ranks=True)
        if not tel.started:  # failed before it really began: the stream still opens with run.start
            tel.emit(
                "run.start",
                pid=os.getpid(),
                world_size=int(os.environ.get("WORLD_SIZE", "1")),
                config_hash=None,
                resumed_from=None,
                fluxtui_version=__version__,
            )
        tel.emit("run.end", status="failed", step=progress.step, error=message, traceback_tail=tail)
        tel.close()
        return 1
    tel.emit("run.end", status=status, step=progress.step, error=None, traceback_tail=None)
    tel.close()
    return 0


def _train(
    ws: Workspace,
    run_dir: Path,
    run_id: str,
    tel: Telemetry,
    control: Control,
    progress: Progress,
    *,
    fresh: bool,
    resume: str | None,
    max_steps: int | None,
) -> str:
    # ======================================================================== setup
    project = setup.load_config(ws, run_dir)
    reports, warnings = setup.check(project)
    choice = setup.pick_checkpoint(ws, project, fresh=fresh, resume=resume)

    import torch

    from . import blocks, caches, checkpoint, data, ema, flow, lora, models, optim, outputs, validation

    accelerator = setup.make_accelerator(project, run_dir)
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    main = accelerator.is_main_process
    t = project.training
    torch.manual_seed(t.seed)
    setup.cpu_threads(project, device, world, tel)
    tel.watch_memory(device)
    tel.emit(
        "run.start",
        pid=os.getpid(),
        world_size=world,
        config_hash=project.config_hash(),
        resumed_from=choice.checkpoint.step if choice.checkpoint else None,
        fluxtui_version=__version__,
    )
    tel.log(f"run {run_id}: {world} process(es) on {device}; {choice.reason}")
    for w in warnings:
        tel.warning(w.message + (f" (fix: {w.fix})" if w.fix else ""), w.key)
    started = time.monotonic()

    # One stage at a time on the accelerator, so none needs more than the training step: the
    # caches load (and free) the text encoders, then the VAE, only for what is missing.
    m = models.prepare_models(project, device=device, log=tel.log)
    entries, text_cache = caches.build_all(project, reports, m, accelerator, tel, lambda: control.stop_requested)
    if control.stop_agreed(world, device):  # signalled while caching: nothing to save yet
        return "stopped"
    tel.stage("load_models", 0, 1, resident=models.resident(m))
    models.load_transformer(m, project, device=device, log=tel.log)
    tel.stage("load_models", 1, 1, resident=models.resident(m))
    transformer = m.transformer
    params = lora.add_lora(transformer, project, log=tel.log)
    tel.log(f"LoRA: {sum(p.numel() for p in params):,} trainable parameters ({project.lora.flux_lora_target})")
    averaged = ema.EMA.from_project(project, params, device)  # None without use_ema
    # Kontext renders edits of the first references; other flavours the validation prompts.
    references = validation.kontext_references(entries) if m.flavour == "kontext" else None
    validator = (
        validation.Validator(project, m, text_cache, run_dir, device, references)
        if main and validation.possible(project, references)
        else None
    )

    if t.gradient_checkpointing:
        n = blocks.enable_gradient_checkpointing(transformer, t.gradient_checkpointing_interval)
        tel.log(f"gradient checkpointing on {n} block(s)")
    else:  # core.rules has warned already
        tel.log("gradient checkpointing off")
    router = blocks.TreadRouter(transformer, t.tread_config["routes"]) if t.tread_config else None
    setup.apply_speed_and_memory_options(project, transformer, device, tel)

    sampler = data.BucketSampler(
        [data.SamplerDataset(b, ds.repeats, ds.probability) for ds, b in caches.bucketed(project, reports, entries)],
        t.train_batch_size,
        t.seed,
    )
    batches_per_step = t.gradient_accumulation_steps * world
    if max_steps:
        total_steps = max_steps
    elif t.max_train_steps:
        total_steps = t.max_train_steps
    else:
        total_steps = data.steps_for_epochs(t.num_train_epochs, sampler.epoch_length, batches_per_step)

    optimizer = optim.build_optimizer(params, project, log=tel.log)
    lr_scheduler = optim.build_lr_scheduler(optimizer, project, total_steps)
    # Every rank loaded the same frozen base: DDP need not broadcast 12B parameters at start.
    transformer._ddp_params_and_buffers_to_ignore = [
        *(n for n, p in transformer.named_parameters() if not p.requires_grad),
        *(n for n, _ in transformer.named_buffers()),
    ]
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    base = accelerator.unwrap_model(transformer)

    if choice.checkpoint is not None:
        lora_state, meta, lr_scheduler = checkpoint.restore(
            choice.checkpoint.path,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            project=project,
            total_steps=total_steps,
            restore_rng=main,
            tel=tel,
        )
        lora.load_lora_state(base, lora_state)
        if averaged is not None:
            averaged.resume(checkpoint.load_ema(choice.checkpoint.path), tel)
        progress.step = int(meta["step"])
        progress.position = setup.resume_position(meta, t.train_batch_size, batches_per_step)
        if not main:
            torch.manual_seed(t.seed + 1000 * rank + progress.step)
    if main:
        checkpoint.remove_stale_temp(ws.outputs_dir)
    setup.init_trackers(accelerator, project, run_id)

    def save_checkpoint() -> None:
        tel.stage("save", 0, 1, resident=models.resident(m))
        began = time.monotonic()
        removed: list[Path] = []
        if main:
            path = checkpoint.save(
                run_dir,
                step=progress.step,
                lora_state=lora.lora_state_dict(base),
                optimizer=optimizer,
                lr_scheduler=lr_scheduler,
                ema_state=averaged.state_dict() if averaged is not None else None,
                meta={
                    "epoch": progress.epoch,
                    "data_position": progress.position,
                    "train_batch_size": t.train_batch_size,
                    "batches_per_step": batches_per_step,
                    "config_hash": project.config_hash(),
                    "resume_hash": core_checkpoints.resume_hash(project),
                    "resume_values": core_checkpoints.resume_values(project),
                    "schedule": optim.schedule_settings(project, total_steps),
                    "run": run_id,
                    "world_size": world,
                    "fluxtui_version": __version__,
                },
            )
            removed = checkpoint.prune(run_dir, t.checkpoints_total_limit)
            if project.hub.push_checkpoints_to_hub:
                outputs.push_checkpoint(path, project, tel, step=progress.step)
            tel.emit(
                "checkpoint",
                step=progress.step,
                path=setup.rel(path, run_dir),
                seconds=round(time.monotonic() - began, 3),
                removed=[setup.rel(p, run_dir) for p in removed],
            )
            tel.log(
                f"checkpoint saved: {setup.rel(path, run_dir)}" + (f" (removed {len(removed)} old)" if removed else "")
            )
        tel.stage("save", 1, 1, resident=models.resident(m))
        accelerator.wait_for_everyone()

    def validate() -> None:
        if main and validator is None:
            tel.warning("validation asked for, but there is no validation prompt or resolution", "validation")
        if validator is not None:
            tel.stage("validate", 0, 1, resident=[*models.resident(m), "vae"])
            images, seconds = [], 0.0
            for suffix, weights in ema.validation_passes(averaged, project.validation.ema_validation):
                with weights:
                    made, took = validator.run(progress.step, base, autocast=accelerator.autocast, suffix=suffix)
                images, seconds = images + made, seconds + took
            tel.emit("validation", step=progress.step, images=images, seconds=seconds)
            tel.log(f"validation: {len(images)} image(s) in {seconds:.1f}s -> {Path(images[0]).parent}")
            tel.stage("validate", 1, 1, resident=[*models.resident(m), "vae"])
        accelerator.wait_for_everyone()

    # ======================================================================== the loop
    def batch_loss(batch: data.Batch) -> Any:
        """Flow-matching loss of one batch (SPEC.md, Training)."""
        dtype = m.weight_dtype
        samples = [caches.load_sample(e) for e in batch.items]
        latents = [s["latent"] for s in samples]
        masks = [s.get("mask") for s in samples]
        x0 = flow.pack_latents(torch.stack(latents).to(device, dtype))
        n_image = x0.shape[1]
        captions = [
            data.pick_caption(e.captions, t.seed, batch.index, i, dropout=t.caption_dropout_probability)
            for i, e in enumerate(batch.items)
        ]
        t5, pooled, t5_mask = (x.to(device) for x in text_cache.load_batch(captions))
        gen = torch.Generator().manual_seed(t.seed * 1_000_003 + batch.index)  # same draw after a resume
        noise = torch.randn(x0.shape, generator=gen).to(device, dtype)
        sigma = flow.sample_sigmas(
            x0.shape[0],
            image_seq_len=x0.shape[1],
            shift=flow.fixed_shift(t.flow_schedule_shift, FLOW_SCHEDULE_SHIFT),
            auto=t.flow_schedule_auto_shift,
            fast=t.flux_fast_schedule or m.flavour == "schnell",
            generator=gen,
        ).to(device)
        if router is not None:
            router.generator = gen
        guidance = flow.training_guidance(
            x0.shape[0],
            mode=t.flux_guidance_mode,
            value=flux_guidance_value(t, m.flavour),
            low=t.flux_guidance_min,
            high=t.flux_guidance_max,
            has_guidance=m.has_guidance,
            generator=gen,
        )
        hidden = flow.noisy_latents(x0, noise, sigma)
        ids = flow.image_ids(latents[0].shape[-2], latents[0].shape[-1]).to(device, dtype)
        if "reference" in samples[0]:  # Kontext: clean reference tokens after the image's, own ids
            refs = torch.stack([s["reference"] for s in samples]).to(device, dtype)
            hidden, ids = flow.append_reference(hidden, ids, refs)
        inputs = {
            "hidden_states": hidden,
            "encoder_hidden_states": t5.to(dtype),
            "pooled_projections": pooled.to(dtype),
            "timestep": sigma.to(dtype),
            "img_ids": ids,
            "txt_ids": flow.text_ids(t5.shape[1]).to(device, dtype),
            "guidance": None if guidance is None else guidance.to(device),
            "joint_attention_kwargs": (
                {"attention_mask": flow.joint_attention_mask(t5_mask, hidden.shape[1])}
                if t.flux_attention_masked_training
                else None
            ),
            "return_dict": False,
        }
        if batch.items[0].regularisation:  # the base model's own answer is the target
            with torch.no_grad(), _adapter_off(base, lora):
                target = flow.target_tokens(base(**inputs)[0], n_image)
        else:
            target = flow.flow_target(x0, noise)
        pred = flow.target_tokens(transformer(**inputs)[0], n_image)  # the loss is the image's alone
        weight = None
        if any(mk is not None for mk in masks):
            full = [mk if mk is not None else torch.ones_like(latents[0][:1]) for mk in masks]
            weight = flow.mask_weights(torch.stack(full).to(device), latents[0].shape[0])
        return flow.flow_loss(pred, target, weight)

    transformer.train()
    status = "completed"
    if progress.step >= total_steps:
        tel.log(f"already at step {progress.step} of {total_steps}: nothing to train (--fresh starts over)")
    tel.stage("train", progress.step, total_steps, resident=models.resident(m))
    first_step_at = None
    last_saved = last_validated = progress.step if choice.checkpoint else -1
    while progress.step < total_steps:
        step_began = time.perf_counter()
        micro_losses = []
        grad_norm = 0.0
        for _ in range(t.gradient_accumulation_steps):
            batch = sampler.batch(progress.position + rank)
            progress.position += world
            progress.epoch = batch.epoch
            with accelerator.accumulate(transformer):
                loss = batch_loss(batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:  # the last micro-batch of the step
                    grad_norm = optim.clip_gradients(params, t.max_grad_norm, t.grad_clip_method, accelerator)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach())
        progress.step += 1
        if averaged is not None:
            averaged.step(progress.step)
        loss_value = float(accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean"))
        progress.losses.append(loss_value)
        seconds = time.perf_counter() - step_began
        first_step_at = first_step_at or time.monotonic()
        alloc, peak = tel.vram_mb(device)
        lr = lr_scheduler.get_last_lr()[0]
        tel.emit(
            "step",
            step=progress.step,
            epoch=progress.epoch,
            loss=loss_value,
            lr=lr,
            grad_norm=grad_norm,
            samples_per_s=round(t.train_batch_size * batches_per_step / seconds, 3),
            vram_alloc_mb=alloc,
            vram_peak_mb=peak,
            rss_mb=rss_mb(),
        )
        telemetry.log_step(tel, progress, total_steps, loss_value, lr, seconds)
        accelerator.log({"loss": loss_value, "lr": lr, "grad_norm": grad_norm}, step=progress.step)

        requests = control.poll(world, device)
        if (t.checkpointing_steps and progress.step % t.checkpointing_steps == 0) or requests & {"checkpoint", "stop"}:
            save_checkpoint()
            last_saved = progress.step
        if (project.validation.validation_steps and progress.step % project.validation.validation_steps == 0) or (
            "validate" in requests
        ):
            validate()
            last_validated = progress.step
        if "stop" in requests:
            status = "stopped"
            tel.log(f"stopped at step {progress.step} ({control.signal_name or 'stop requested'})")
            break
    tel.stage("train", progress.step, total_steps, resident=models.resident(m))

    # ======================================================================== the end
    if status == "completed":
        if last_saved != progress.step and progress.step > 0:
            save_checkpoint()  # so a longer run can resume from the end
        if last_validated != progress.step and validation.enabled(project, references):
            validate()
        tel.stage("save", 0, 1, resident=models.resident(m))
        with ema.saved_weights(averaged):
            if main:
                paths = outputs.save_final(base, run_dir, project, step=progress.step, run_id=run_id, flavour=m.flavour)
                tel.log("LoRA written: " + ", ".join(setup.rel(p, run_dir) for p in paths))
            tel.log(f"LoRA sha256 {telemetry.lora_digest(lora.lora_state_dict(base))}", all_ranks=True)
        tel.stage("save", 1, 1, resident=models.resident(m))
        telemetry.log_loss_summary(tel, progress.losses)
        if main and project.hub.push_to_hub:
            outputs.push_to_hub(run_dir / outputs.LORA_DIR, project, tel)
    if first_step_at is not None:
        tel.log(f"time to first step {first_step_at - started:.1f}s; total {time.monotonic() - started:.1f}s")
    accelerator.end_training()
    return status


@contextlib.contextmanager
def _adapter_off(base: Any, lora: Any) -> Any:
    lora.set_adapter_enabled(base, False)
    try:
        yield
    finally:
        lora.set_adapter_enabled(base, True)
