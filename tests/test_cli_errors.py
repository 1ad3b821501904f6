"""One error path: every expected error (`SyncseError`) ends a command with one clear message and its exit code,
no traceback; the same through the `jobs/` entrypoints. No Ray (each error comes before any cluster starts)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from syncse_ray.cli import app
from syncse_ray.errors import SyncseError
from syncse_ray.jobs import job_main


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
