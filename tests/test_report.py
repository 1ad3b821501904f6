"""The run report from hand-written stage outputs: every section present, numbers carried over, plots real PNGs."""

import json

from syncse_ray.config import load_config
from syncse_ray.pipeline.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def test_report_sections_numbers_and_plots(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}", "name=demo"])
    _write(tmp_path / "synth" / "manifest.json", {
        "mode": "partial", "model": "bundled:smollm2-135m-instruct",
        "phases": {"annotate": {"requests": 64, "kept": 27, "dropped": 5, "prompt_tokens": 17676,
                                "output_tokens": 1750, "output_tokens_per_s": 21.2}}})
    _write(tmp_path / "synth" / "stats.json", {
        "drop_reasons": {"annotate": {"anchor_copy": 4, "too_long": 1}},
        "diversity": {"sent1": {"distinct_2": 0.92, "duplicate_rate": 0.0}}})
    history = [{"step": 2, "loss": 1.5, "lr": 1e-5, "samples_per_s": 10.0},
               {"step": 4, "loss": 1.1, "lr": 1e-5, "samples_per_s": 12.0},
               {"step": 4, "stsb_dev": 80.0, "sickr_dev": 70.0, "dev_score": 75.0}]
    _write(tmp_path / "train" / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    _write(tmp_path / "train" / "stage.json", {"result": {"steps": 4, "best_step": 4, "best_score": 75.0,
                                                            "best_dir": str(tmp_path / "train" / "best")}})
    tasks = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]
    records = [{"model": "m", "protocol": "senteval-sts", "task": t, "split": "test", "score": 70.0 + i}
               for i, t in enumerate(tasks)]
    records.append({"model": "m", "protocol": "senteval-sts", "task": "avg", "split": "test", "score": 73.0})
    _write(tmp_path / "eval" / "results.json", {"model": "m", "records": records, "seconds": 1.0})
    record = {"stages": {"synth": {"status": "skipped", "seconds": 0.1, "work_seconds": 247.0},
                         "train": {"status": "ran", "seconds": 60.0, "work_seconds": 60.0}}}

    text = write_report(cfg, record).read_text()

    assert text.startswith("# Run report: demo")
    for expected in ("## Wall time per stage", "| synth | skipped | 4.1 min", "## Data (synthesis)",
                     "| annotate | 64 | 27 | 5 | 17676 | 1750 | 21.2 |", "| annotate | anchor_copy | 4 |",
                     "## Training", "| 4 | 4 | 75.00 |", "![training loss](report_loss.png)",
                     "![dev scores](report_dev.png)", "Throughput: 11.0 samples/s", "## Evaluation",
                     "| `m` | 70.00 | 71.00 | 72.00 | 73.00 | 74.00 | 75.00 | 76.00 | 73.00 |",
                     "SynCSE-partial-RoBERTa-base (paper)"):
        assert expected in text, expected
    for png in ("report_loss.png", "report_dev.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC


def test_report_leaves_out_stages_that_did_not_run(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    text = write_report(cfg, {"stages": {}}).read_text()
    assert "## Data" not in text and "## Training" not in text and "## Evaluation" not in text
    assert not list(tmp_path.glob("*.png"))


def test_report_puts_the_encoder_before_training_beside_the_trained_one(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}", "eval.compare_base=true"])
    tasks = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]

    def results(model, offset):
        records = [{"model": model, "protocol": "senteval-sts", "task": t, "split": "test", "score": offset + i}
                   for i, t in enumerate(tasks)]
        records.append({"model": model, "protocol": "senteval-sts", "task": "avg", "split": "test",
                        "score": offset + 3})
        return {"model": model, "records": records, "seconds": 1.0}

    _write(tmp_path / "eval" / "base" / "results.json", results("bundled:smollm2-135m-instruct", 40.0))
    _write(tmp_path / "eval" / "results.json", results(str(tmp_path / "train" / "best"), 50.5))

    text = write_report(cfg, {"stages": {}}).read_text()

    before = text.index("| `before training: bundled:smollm2-135m-instruct` | 40.00 | 41.00 |")
    after = text.index("| `after training: best` | 50.50 | 51.50 |")
    assert before < after < text.index("SynCSE-partial-RoBERTa-base (paper)")
    assert "Gain from training: STS12 +10.50," in text and "average +10.50." in text


def test_report_verified_triplets_section(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    _write(tmp_path / "synth" / "manifest.json", {
        "mode": "partial", "model": "bundled:smollm2-135m-instruct",
        "config": {"synth": {"candidates": 4, "judge": {"method": "embedding", "model": "bundled:all-minilm-l6-v2"}}},
        "phases": {"annotate": {"requests": 8, "kept": 2, "dropped": 2, "prompt_tokens": 900, "output_tokens": 300}}})
    _write(tmp_path / "synth" / "stats.json", {
        "drop_reasons": {"annotate": {"inverted": 1, "eval_overlap": 1}},
        "judge": {"candidates_per_kept": 16.0, "tokens_per_kept": 600.0, "agreement": 1.0, "mean_pos": 0.85,
                  "mean_neg": 0.6, "margin_quantiles": {"0.5": 0.25},
                  "candidate_reasons": {"selected": 4, "not_selected": 24, "anchor_copy": 4}}})
    (tmp_path / "synth" / "data").mkdir()
    pq.write_table(pa.table({"pos_score": [0.9, 0.8], "neg_score": [0.6, 0.55]}),
                   tmp_path / "synth" / "data" / "part-00000.parquet")

    text = write_report(cfg, {"stages": {}}).read_text()

    for expected in ("### Verified triplets", "4 candidates per (sentence, kind), judge **embedding**",
                     "| 16.0 | 600 | 100.0% | 0.850 | 0.600 | 0.250 |", "| not_selected | 24 |",
                     "| annotate | eval_overlap | 1 |", "![judge margins](report_margins.png)"):
        assert expected in text, expected
    assert (tmp_path / "report_margins.png").read_bytes()[:8] == PNG_MAGIC


def test_report_sts_table_has_the_reference_rows_with_their_per_task_numbers(tmp_path):
    from syncse_ray.eval.results import PAPER_STS_AVG, REFERENCE_STS_ROWS

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    tasks = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]
    records = [{"model": "m", "protocol": "senteval-sts", "task": t, "split": "test", "score": 60.0}
               for t in tasks] + [{"model": "m", "protocol": "senteval-sts", "task": "avg", "split": "test",
                                   "score": 60.0}]
    _write(tmp_path / "eval" / "results.json", {"model": "m", "records": records, "seconds": 1.0})

    text = write_report(cfg, {"stages": {}}).read_text()

    # The released SynCSE-partial-RoBERTa-base, per task (hkust-nlp/SynCSE README), after the run's row.
    released = ("| SynCSE-partial-RoBERTa-base (released) | 76.14 | 84.41 | 79.23 | 84.85 | 82.87 | 83.95 | 81.41 "
                "| 81.84 |")
    assert text.index("| `m` | 60.00 |") < text.index(released)
    for name, avg in PAPER_STS_AVG:  # the paper's rows: their averages (per-task cells where not sourced)
        assert f"| {name}-RoBERTa-base (paper) | – | – | – | – | – | – | – | {avg:.2f} |" in text
    assert len(REFERENCE_STS_ROWS) == len(PAPER_STS_AVG) + 3
    for _, per_task, avg, source in REFERENCE_STS_ROWS:
        assert source and (per_task is None or len(per_task) == len(tasks))
        if per_task:
            assert abs(sum(per_task) / len(per_task) - avg) < 0.01  # the source's average is its rows' mean


def test_report_shows_synthesis_stats_without_a_manifest(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    _write(tmp_path / "synth" / "stats.json", {
        "kept": {"annotate": 6}, "dropped": {"annotate": 4},
        "drop_reasons": {"annotate": {"inverted": 3, "too_long": 1}},
        "judge": {"candidates_per_kept": 4.0, "tokens_per_kept": 300.0, "agreement": 0.5, "mean_pos": 0.8,
                  "mean_neg": 0.7, "scored_rows": 6,
                  "margin_quantiles": {"0.05": -0.1, "0.25": 0.0, "0.5": 0.1, "0.75": 0.2, "0.95": 0.3}}})

    text = write_report(cfg, {"stages": {}}).read_text()

    for expected in ("## Data (synthesis)", "counts from `synth/stats.json`", "| annotate | 6 | 4 |",
                     "| annotate | inverted | 3 | 75% |", "### Verified triplets", "| 4.0 | 300 | 50.0% |",
                     "quantiles over 6 sampled kept rows", "| 5% | 25% | 50% | 75% | 95% |",
                     "| -0.100 | 0.000 | 0.100 | 0.200 | 0.300 |"):
        assert expected in text, expected
