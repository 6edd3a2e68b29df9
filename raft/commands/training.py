"""The training stage: fine-tune the replica, export its adapter, list the models."""

from __future__ import annotations

import click

from raft.console import persona_argument, threads_option
from raft.errors import UsageError
from raft.paths import DATASETS, Persona


@click.command("ft:run")
@persona_argument
@click.option(
    "--backend", type=click.Choice(["local", "openai"]), default="local", show_default=True
)
@click.option("--base-model", metavar="M", help="Local: HF folder or hub id; OpenAI: model name.")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="raft",
    show_default=True,
    help="Train on the RAFT samples (finetune/) or the same samples without memories "
    "(finetune/plain/, from `ft:gen --no-memories`).",
)
@click.option("--epochs", type=int, help="Passes over the training file.")
@click.option("--max-steps", type=int, help="Local: stop after this many optimizer steps.")
@click.option("--lr", type=float, help="Local: learning rate (default 2e-4 SFT, 5e-5 DPO).")
@click.option("--lr-multiplier", type=float, help="OpenAI: learning-rate multiplier.")
@click.option(
    "--batch-size",
    type=int,
    help="Samples per optimizer step (local: padded batches instead of --batch-tokens).",
)
@click.option(
    "--batch-tokens",
    type=int,
    metavar="N",
    help="Local SFT: tokens per device and step, samples packed whole "
    "[CPU: --max-length; GPU: ~8192 as memory allows].",
)
@click.option(
    "--checkpointing",
    type=click.Choice(["auto", "on", "off"]),
    help="Local: recompute activations to save memory; auto when they would not fit [auto].",
)
@click.option(
    "--peak-tflops",
    type=float,
    metavar="X",
    help="Local: the device's dense bf16 peak, for the MFU of a GPU not in raft's table.",
)
@click.option("--lora-r", type=int, default=16, show_default=True, help="Local: LoRA rank.")
@click.option("--max-length", type=int, help="Local: tokens per sample [1024 CPU, 4096 GPU].")
@click.option("--save-steps", type=int, default=50, show_default=True, help="Local: checkpoints.")
@click.option("--resume", is_flag=True, help="Local: continue the last unfinished run.")
@click.option("--suffix", help="OpenAI: model name suffix (default: the persona name).")
@threads_option
def ft_run(
    persona: Persona,
    backend: str,
    base_model: str | None,
    method: str,
    dataset: str,
    epochs: int | None,
    max_steps: int | None,
    lr: float | None,
    lr_multiplier: float | None,
    batch_size: int | None,
    batch_tokens: int | None,
    checkpointing: str | None,
    peak_tflops: float | None,
    lora_r: int,
    max_length: int | None,
    save_steps: int,
    resume: bool,
    suffix: str | None,
) -> None:
    """Train the replica on finetune/: a local LoRA, or an OpenAI fine-tuning job.

    Local: LoRA on SmolLM2-135M-Instruct by default; loss on the final answer only.
    --method dpo prefers the author's real answer over the base model's reply, starting
    from the newest SFT adapter. OpenAI: uploads openai.jsonl, starts a job and follows it;
    Ctrl-C detaches, and running the command again re-attaches. Runs land in models/.
    Example: raft ft:run sample --backend local --max-steps 20
    """
    persona.require()
    for name, value in [
        ("--epochs", epochs),
        ("--max-steps", max_steps),
        ("--batch-size", batch_size),
        ("--batch-tokens", batch_tokens),
    ]:
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    if peak_tflops is not None and not peak_tflops > 0:
        raise UsageError("--peak-tflops must be above 0")
    from raft import distributed

    if backend == "openai" and distributed.launched():
        distributed.require_everywhere("accelerate launch runs --backend local only")
    if backend == "openai":
        from raft.training.openai_jobs import JobSettings, run_openai_job

        local_only = {
            "--max-steps": max_steps,
            "--lr": lr,
            "--max-length": max_length,
            "--resume": resume or None,
            "--batch-tokens": batch_tokens,
            "--checkpointing": checkpointing,
            "--peak-tflops": peak_tflops,
        }
        given = [name for name, value in local_only.items() if value is not None]
        if given or method != "sft":
            raise UsageError(
                f"{', '.join(given) or '--method dpo'} applies to --backend local only"
            )
        if not base_model:
            raise UsageError("--backend openai needs --base-model (e.g. gpt-4.1-mini-2025-04-14)")
        settings = JobSettings(
            base_model=base_model,
            epochs=epochs,
            lr_multiplier=lr_multiplier,
            batch_size=batch_size,
            suffix=suffix or persona.name,
            dataset=dataset,
        )
        record = run_openai_job(persona, settings)
    else:
        from raft.training.base import LoraSettings
        from raft.training.local import run_lora

        if lr_multiplier is not None or suffix is not None:
            raise UsageError("--lr-multiplier and --suffix apply to --backend openai only")
        settings = LoraSettings(
            method=method,
            base_model=base_model,
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            checkpointing=checkpointing or "auto",
            peak_tflops=peak_tflops,
            lora_r=lora_r,
            resume=resume,
            max_length=max_length,
            save_steps=save_steps,
            dataset=dataset,
        )
        record = run_lora(persona, settings)
        distributed.leave()
    if distributed.is_main():  # under accelerate launch, one line for all processes
        click.echo(f"{record.id}: {record.status} -> {record.model}")


@click.command()
@persona_argument
@click.option("--run", "run_id", metavar="RUN", help="Registry id (default: newest local run).")
@click.option("--gguf", is_flag=True, required=True, help="Write a GGUF LoRA adapter.")
def export(persona: Persona, run_id: str | None, gguf: bool) -> None:
    """Export a trained LoRA adapter as a GGUF adapter, with an Ollama Modelfile.

    The adapter loads in llama.cpp beside its base model (llama-cpp-python `lora_path`,
    `llama-cli --lora`), and `ollama create NAME -f Modelfile` imports both.
    Example: raft export sample --gguf
    """
    from raft.training.export import export_gguf

    record = export_gguf(persona.require(), run_id)
    for kind, path in record.exports.items():
        click.echo(f"{kind}: {persona.root / path}")


@click.command()
@persona_argument
def models(persona: Persona) -> None:
    """List the persona's trained models: local adapters and OpenAI fine-tunes.

    Example: raft models sample
    """
    from raft.training.registry import print_records

    print_records(persona.require())
