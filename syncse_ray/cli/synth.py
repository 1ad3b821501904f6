"""`syncse synth CONFIG [--set k=v ...]`: run (or resume) the synth stage with a progress bar and a summary."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncse_ray.cli.common import ConfigPath, SetOption, console, load_command_config

_PHASE_LABELS = {"sentences": "writing sentences (requests)", "annotate": "positives + hard negatives (requests)"}


def summary_table(result) -> Table:
    """Counts, drop reasons, tokens and diversity of a finished synth run."""
    m, final = result.manifest, result.manifest["phases"]["annotate"]
    table = Table(title=f"synth {m['mode']} -> {result.output_dir}" + (" (already complete)" if result.skipped
                                                                         else ""))
    table.add_column("what")
    table.add_column("value", justify="right")
    if "sentences" in m["phases"]:
        s = m["phases"]["sentences"]
        table.add_row("sentence-writing requests", str(s["requests"]))
        table.add_row("sentences written (before dedupe)", str(s["kept"]))
        for reason, n in s["drop_reasons"].items():
            table.add_row(f"  sentences dropped: {reason}", str(n))
    table.add_row("rows requested", str(result.requested))
    table.add_row("triplets kept", f"[green]{result.kept}[/]")
    table.add_row("rows dropped", str(result.dropped))
    for reason, n in result.drop_reasons.items():
        table.add_row(f"  dropped: {reason}", str(n))
    table.add_row("prompt / output tokens", f"{m['prompt_tokens']} / {m['output_tokens']}")
    table.add_row("output tokens/s (engine)", f"{final['output_tokens_per_s']:.1f}")
    writer = m.get("writer") or {}
    if writer.get("kind") == "openai":
        table.add_row("endpoint", f"{writer.get('endpoint')} ({writer.get('model')})")
        table.add_row("HTTP requests / retries", f"{writer.get('http_requests')} / {writer.get('retries')}")
        if writer.get("cost_usd") is not None:
            table.add_row("cost (configured prices)", f"${writer['cost_usd']:.4f}")
    for column, d in result.stats["diversity"].items():
        table.add_row(f"{column}: distinct-2 / duplicate rate", f"{d['distinct_2']:.3f} / {d['duplicate_rate']:.3f}")
    table.add_row("wall time (this run)", f"{m['wall_seconds']:.1f} s")
    table.add_row("data", str(result.data_dir))
    return table


def synth_command(config: ConfigPath, set_: SetOption = None) -> None:
    """Synthesize (sent0, sent1, hard_neg) triplets with an LLM: SynCSE-partial or SynCSE-scratch.
    Re-running the same command resumes an interrupted run."""
    cfg = load_command_config(config, set_)
    from syncse_ray.synth.pipeline import run_synth

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int, summary: dict | None = None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASE_LABELS.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        result = run_synth(cfg, progress=progress)
    console.print(summary_table(result))
