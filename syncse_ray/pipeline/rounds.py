"""`pipeline.rounds: N > 1`: the encoder in the loop. Round 1 is the usual synth -> train -> eval; in round r > 1
the encoder round r-1 trained judges round 1's candidates again and mines hard negatives
(`syncse_ray.synth.next_round`), then training runs again (from `train.model`, or from round r-1's model with
`pipeline.next_round.init: previous`) and the model is evaluated.

    <run_dir>/round_1/synth/ train/ eval/ [eval/base/]     (synth: synth.output_dir when that is set)
    <run_dir>/round_<r>/select/ train/ eval/               r > 1
    <run_dir>/pipeline.json                                stages as "round_<r>/<stage>", and "rounds": one
                                                           entry per round (the report's table)

Every stage keeps its own marker, so a killed run resumes in the round and stage where it stopped and never
redoes a finished one. After each training the dev score (STS-B dev + SICK-R trial, what training selects on)
decides: a round that does not beat the best earlier round by more than `min_delta` is not evaluated and ends
the run; the best round's model is the run's model (report, index, serve).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncse_ray.config import Config
from syncse_ray.pipeline.console import RunConsole, StageDisplay
from syncse_ray.pipeline.record import PipelineResult, run_stage, write_record
from syncse_ray.pipeline.stages import STAGES
from syncse_ray.runtime import stage_marker
from syncse_ray.synth.layout import Layout
from syncse_ray.synth.reselect import round_1_agreement


def round_dir(cfg: Config, r: int) -> Path:
    return Path(cfg.run_dir) / f"round_{r}"


def round_config(cfg: Config, r: int, init_model: str | None = None) -> Config:
    """The config of round r: the same settings with every stage writing into round_<r>/; round 1's synthesis
    shared by all rounds; r > 1 trains on its own selection, from `init_model` when given."""
    folder = round_dir(cfg, r)
    synth_dir = cfg.synth.output_dir or round_dir(cfg, 1) / "synth"
    train: dict[str, Any] = {"output_dir": folder / "train"}
    if r > 1:
        train["data"] = folder / "select" / "data"
    if init_model:
        train["model"] = init_model
    return cfg.model_copy(update={
        "synth": cfg.synth.model_copy(update={"output_dir": synth_dir}),
        "train": cfg.train.model_copy(update=train),
        "eval": cfg.eval.model_copy(update={"output_dir": folder / "eval", "compare_base": cfg.eval.compare_base
                                            and r == 1}),
        "pipeline": cfg.pipeline.model_copy(update={"rounds": 1}),
    })


def improved(dev_scores: list[float], min_delta: float | None) -> bool:
    """The rounds' stop rule: whether the last round's dev score beats every earlier round's by more than
    `min_delta` (None: always go on). The first round always counts as an improvement."""
    if min_delta is None or len(dev_scores) < 2:
        return True
    return dev_scores[-1] > max(dev_scores[:-1]) + min_delta


def _tokens(cfg: Config) -> int | None:
    """The LLM output tokens round 1's synthesis spent (later rounds spend none)."""
    path = Layout(cfg.stage_dir("synth")).manifest
    return json.loads(path.read_text()).get("output_tokens") if path.is_file() else None


def synth_agreement(synth_dir: Path) -> dict[str, Any]:
    """Round 1's judge agreement on its own kept triplets (`reselect.round_1_agreement`), read from the synthesis'
    data/ (pos_score, neg_score per kept triplet)."""
    import pyarrow.parquet as pq

    data = Path(synth_dir) / "data"
    pos: list[float | None] = []
    neg: list[float | None] = []
    if data.is_dir() and any(data.glob("*.parquet")):
        table = pq.read_table(data, columns=["pos_score", "neg_score"])
        pos, neg = table.column("pos_score").to_pylist(), table.column("neg_score").to_pylist()
    return round_1_agreement(pos, neg)


def run_rounds(cfg: Config, record: dict[str, Any], result: PipelineResult,
               console: RunConsole | None) -> Config:
    """Run (or resume) every round; returns the best round's config (module docstring)."""
    from syncse_ray.eval.results import sts_average
    from syncse_ray.synth.next_round import run_select

    next_round = cfg.pipeline.next_round
    rounds: list[dict[str, Any]] = []
    record["rounds"] = rounds
    best: tuple[float, Config] | None = None
    previous: Config | None = None
    for r in range(1, cfg.pipeline.rounds + 1):
        init = (str((previous.stage_dir("train") / "best").resolve())
                if previous and next_round.init == "previous" else None)
        rcfg = round_config(cfg, r, init)
        row: dict[str, Any] = {"round": r}
        if r == 1:
            synth = run_stage("round_1/synth", STAGES["synth"].run_shown, rcfg, record, result, console)
            # every kept triplet is round 1's own choice; whether its judge scores the positive above the negative
            # is measured (the margins need not guarantee it)
            row.update(kept=synth["kept"], tokens=_tokens(rcfg), same_as_round_1=synth["kept"],
                       **synth_agreement(rcfg.stage_dir("synth")))
        else:
            judge_model = str((previous.stage_dir("train") / "best").resolve())
            version = (stage_marker.read_marker(previous.stage_dir("train")) or {}).get("fingerprint")

            def select(c: Config, display: StageDisplay, r: int = r, judge_model: str = judge_model,
                       version: str | None = version) -> dict[str, Any]:
                out = run_select(c, r, judge_model, version, round_dir(c, r) / "select")
                return {"skipped": out.skipped, **{k: out.stats.get(k) for k in (
                    "kept", "dropped", "mined", "same_as_round_1", "round_1_judge_agreement", "round_1_judged",
                    "round_1_judge_agreement_note")}}

            sel = run_stage(f"round_{r}/select", select, rcfg, record, result, console)
            row.update(kept=sel["kept"], mined=sel["mined"], same_as_round_1=sel["same_as_round_1"], tokens=0,
                       round_1_judge_agreement=sel["round_1_judge_agreement"], round_1_judged=sel["round_1_judged"],
                       **({"round_1_judge_agreement_note": sel["round_1_judge_agreement_note"]}
                          if sel.get("round_1_judge_agreement_note") else {}))
        train = run_stage(f"round_{r}/train", STAGES["train"].run_shown, rcfg, record, result, console)
        row.update(steps=train["steps"], dev_score=train["best_dev_score"])
        rounds.append(row)
        if not improved([x["dev_score"] for x in rounds], next_round.min_delta):
            row["status"] = "stopped"  # no better than an earlier round: not evaluated, no further rounds
            break
        if "eval" in cfg.pipeline.stages:
            run_stage(f"round_{r}/eval", STAGES["eval"].run_shown, rcfg, record, result, console)
            row["sts_avg"] = sts_average(rcfg.stage_dir("eval") / "results.json")
        row["status"] = "kept"
        if best is None or row["dev_score"] > best[0]:
            best = (row["dev_score"], rcfg)
        previous = rcfg
    assert best is not None  # round 1 always counts as an improvement
    record["best_round"] = next(x["round"] for x in rounds if x["dev_score"] == best[0])
    record["base_eval"] = str(round_dir(cfg, 1) / "eval" / "base")
    write_record(Path(cfg.run_dir), record)
    return best[1]
