"""The index stage of a run: serve.corpus embedded by the run's model (serve.model, else the evaluated model) into
<run_dir>/index, skipped when done with the same settings (stage.json). What `syncse pipeline` with
`pipeline.build_index` and `jobs/index.py` run; `syncse index build` builds an index outside a run. No Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncse_ray.config import Config
from syncse_ray.runtime import stage_marker
from syncse_ray.serve.index import CorpusError
from syncse_ray.train.outputs import evaluated_model, model_version


@dataclass
class IndexResult:
    index_dir: Path  # index.faiss, docs.parquet, meta.json (syncse_ray.serve.index)
    skipped: bool = False  # the index was already built for this config


def index_dir(cfg: Config) -> Path:
    return cfg.run_dir / "index"


def run_index(cfg: Config, progress: Callable[..., None] | None = None) -> IndexResult:
    """Embed serve.corpus into <run_dir>/index. `progress` is accepted for the shape every stage has; building
    reports nothing."""
    from syncse_ray.serve.index import build_index

    if cfg.serve.corpus is None:
        raise CorpusError("the index stage needs serve.corpus (a text/JSONL/Parquet file to index)")
    model = cfg.serve.model or evaluated_model(cfg)
    out = index_dir(cfg)
    settings = {"corpus": str(Path(cfg.serve.corpus).resolve()), "model": model,
                "model_version": model_version(cfg, model),
                "fields": [cfg.serve.corpus_text_field, cfg.serve.corpus_id_field]}
    if stage_marker.is_done(out, settings):
        return IndexResult(out, skipped=True)
    build_index(cfg.serve.corpus, model, out, text_field=cfg.serve.corpus_text_field,
                id_field=cfg.serve.corpus_id_field)
    stage_marker.mark_done(out, "index", settings)
    return IndexResult(out)
