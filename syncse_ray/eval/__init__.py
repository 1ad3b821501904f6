"""Evaluation: SentEval-protocol STS, transfer tasks and MTEB, for any encoder the project can load.

    from syncse_ray.eval import run_eval, render_table
    results = run_eval("bundled:all-minilm-l6-v2", ["sts"], data_dir, out_dir)   # writes results.{json,md}
    print(render_table(results))

`syncse_ray.eval.sts` (the STS metric) is pure and cheap to import; training uses it, with the readers of
`syncse_ray.data.senteval`, for model selection on the dev sets. `stage.py` is the eval stage of a run
(`run_eval_stage(cfg)`). Nothing here imports Ray.
"""

from syncse_ray.data.senteval import DataError, load_sts_dev
from syncse_ray.eval.results import render_table, write_results
from syncse_ray.eval.runner import EvalError, run_eval
from syncse_ray.eval.sts import spearman_cosine
from syncse_ray.models.encoders import Encoder, load_encoder

__all__ = ["DataError", "Encoder", "EvalError", "load_encoder", "load_sts_dev", "render_table", "run_eval",
           "spearman_cosine", "write_results"]
