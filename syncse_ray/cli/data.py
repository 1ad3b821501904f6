"""`syncse data fetch`: benchmark and seed data from the Hugging Face hub into the data dir (syncse_ray/data/fetch.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syncse_ray.cli.common import App, console
from syncse_ray.data.datadir import default_data_dir

data_app = App(help="Benchmark and seed data: fetch it from the Hugging Face hub into the data dir.",
               no_args_is_help=True)


@data_app.command("fetch")
def fetch_command(
    to: Annotated[Path | None, typer.Option(
        help="The data dir to fill. Default: $SYNCSE_DATA_DIR, else ~/.cache/syncse-ray/data.")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Fetch only this dataset (repeatable): senteval-sts, senteval-transfer, snli, "
                       "wiki1m-sample, simcse-wiki1m, simcse-nli, rerank-askubuntu, rerank-mindsmall, "
                       "rerank-scidocs, rerank-stackoverflow.")] = None,
    transfer: Annotated[bool, typer.Option(
        "--transfer", help="Also fetch the SentEval transfer sets (MR, CR, SUBJ, MPQA, SST2, TREC, MRPC).")] = False,
    rerank: Annotated[bool, typer.Option(
        "--rerank", help="Also fetch the paper's reranking sets as mteb has them (AskUbuntuDupQuestions, "
                         "MindSmallReranking, SciDocsRR, StackOverflowDupQuestions), for `syncse eval --tasks "
                         "rerank` offline.")] = False,
    force: Annotated[bool, typer.Option(help="Fetch again even when the manifest says a dataset is complete.")] = False,
    source: Annotated[Path | None, typer.Option(
        help="A local folder of <owner>/<name>/ dataset repos laid out like the hub's, used instead of the hub.")] = None,
) -> None:
    """Download the STS/SICK benchmarks, SNLI and the wiki1m sample (default; more with --only/--transfer/--rerank) and
    write them in the layout the readers expect, with <data dir>/manifest.json."""
    from syncse_ray.data.fetch import Source, fetch

    data_dir = to or default_data_dir()
    table = Table(title=f"data dir {data_dir}")
    for col in ("dataset", "status", "files", "rows"):
        table.add_column(col, overflow="fold")

    said = {"fetched": "[green]fetched[/]", "skipped": "[yellow]complete[/] (manifest)",
            "present": "[yellow]present[/] (not fetched by syncse; --force replaces it)"}

    def show(result) -> None:
        table.add_row(result.name, said[result.status], str(result.files), _rows(result.rows))

    fetch(data_dir, only=only, transfer=transfer, rerank=rerank, force=force, source=Source(source), on_dataset=show)
    console.print(table)
    if (data_dir / "manifest.json").is_file():
        console.print(f"[green]manifest[/] {data_dir / 'manifest.json'}")


def _rows(rows: dict) -> str:
    return ", ".join(f"{k} {v if not isinstance(v, dict) else '/'.join(str(x) for x in v.values())}"
                     for k, v in rows.items())
