"""One error path: every expected error (`SyncseError`) ends a command with one clear message and its exit code,
no traceback; the same through the `jobs/` entrypoints. No Ray (each error comes before any cluster starts)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app
from syncse_ray.cli.jobs import job_main
from syncse_ray.errors import SyncseError


def _run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output and not isinstance(result.exception, SyncseError), result.output
    return result


def test_config_error_through_pipeline():
    result = _run("pipeline", "configs/quickstart.yaml", "--set", "train.lr=-1")
    assert result.exit_code == 2 and "train.lr" in result.output and "greater than 0" in result.output


def test_unloadable_model_through_eval(tmp_path):
    result = _run("eval", str(tmp_path / "no-such-model"), "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "error:" in result.output


def test_refused_output_folder_through_train(tmp_path, data_dir, minilm_path):
    data = tmp_path / "triplets.parquet"
    pd.DataFrame({"sent0": ["a b"] * 64, "sent1": ["c d"] * 64, "hard_neg": ["e f"] * 64}).to_parquet(data)
    out = tmp_path / "run" / "train"
    out.mkdir(parents=True)
    (out / "run_config.json").write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    result = _run("train", "configs/quickstart.yaml", "--set", f"run_dir={tmp_path / 'run'}",
                  "--set", f"data_dir={data_dir}", "--set", f"train.data={data}",
                  "--set", f"train.model={minilm_path}")
    assert result.exit_code == 2 and "different config" in result.output


def test_jobs_entrypoint_gives_one_line_and_the_exit_code(capsys):
    assert job_main("train", ["--config", "configs/quickstart.yaml", "--set", "train.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid config") and "train.epochs" in err


def _pipeline(tmp_path, *overrides: str) -> tuple[int, list[str]]:
    """`syncse pipeline configs/quickstart.yaml` as a user runs it: its own process, its real console (quiet)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [str(Path(sys.executable).with_name("syncse")), "pipeline", "configs/quickstart.yaml",
           "--set", f"run_dir={tmp_path / 'run'}"]
    for item in overrides:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != "SYNCSE_VERBOSE"}
    proc = subprocess.run(cmd, cwd=repo, env={**env, "COLUMNS": "80"}, capture_output=True, text=True,
                          timeout=300, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, lines


def _error_line(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    return errors[0]


def _triplets(tmp_path):
    data = tmp_path / "triplets.parquet"
    pd.DataFrame({"sent0": ["a b"] * 64, "sent1": ["c d"] * 64, "hard_neg": ["e f"] * 64}).to_parquet(data)
    return data


@pytest.mark.slow  # four `syncse pipeline` processes (~20 s), no Ray
def test_pipeline_errors_are_one_line_with_the_exit_code(tmp_path, data_dir, minilm_path):
    """Through `syncse pipeline`: a config error, a missing data dir, an unloadable model and a refused folder
    (which names the setting that differs) each end in one `error:` line and exit code 2, before Ray starts."""
    code, lines = _pipeline(tmp_path, "train.lr=-1")
    assert code == 2 and "train.lr" in _error_line(lines) and "greater than 0" in _error_line(lines)

    code, lines = _pipeline(tmp_path, f"data_dir={tmp_path / 'no-data'}")
    assert code == 2 and "run: syncse data fetch" in _error_line(lines), lines

    train_only = [f"data_dir={data_dir}", "pipeline.stages=[train]", f"train.data={_triplets(tmp_path)}"]
    code, lines = _pipeline(tmp_path, *train_only, f"train.model={tmp_path / 'no-such-model'}")
    assert code == 2 and "no-such-model" in _error_line(lines), lines

    # A training folder another config (lr 1e-3) has claimed: refused, naming train.lr and both values.
    from syncse_ray.config import load_config
    from syncse_ray.runtime import stage_marker
    from syncse_ray.train.trainer import training_settings

    other = load_config("configs/quickstart.yaml", [f"run_dir={tmp_path / 'run'}", *train_only,
                                                     f"train.model={minilm_path}", "train.lr=1e-3"])
    stage_marker.claim(other.stage_dir("train"), "training", training_settings(other), "run_config.json",
                       "train.output_dir")
    code, lines = _pipeline(tmp_path, *train_only, f"train.model={minilm_path}")
    error = _error_line(lines)
    assert code == 2 and "lr: 0.001 -> 0.0002" in error and "train.output_dir" in error, lines
    assert any(line.startswith("train: failed") for line in lines) and len(lines) <= 3, lines


def test_eval_stage_alike_through_the_cli_and_its_job(tmp_path, monkeypatch, capsys):
    """`syncse eval --config C` (no MODEL) and jobs/eval.py run the same eval stage: before training, the same
    one-line error and exit code."""
    from syncse_ray.cli import jobs

    run = ["--set", f"run_dir={tmp_path / 'run'}", "--set", "eval.compare_base=false"]
    result = _run("eval", "--config", "configs/quickstart.yaml", *run)
    assert result.exit_code == 2 and "no trained model at" in result.output, result.output
    monkeypatch.setattr(jobs, "init_ray", lambda cfg=None: None)  # the stage fails before it needs a cluster
    assert job_main("eval", ["--config", "configs/quickstart.yaml", *run]) == 2
    assert "no trained model at" in capsys.readouterr().err
