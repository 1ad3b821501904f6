"""Synth progress in requests, inside chunks: the engine actor's counting (steps.ChunkProgress, the engine step
hook), the board and the driver's accounting (pipeline.ProgressBoard, PhaseProgress), the console's ETA.
No Ray, no engine: fakes stand in for vLLM's LLM and its RequestOutputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from syncse_ray.config import load_config
from syncse_ray.io import write_table_atomic
from syncse_ray.pipeline.console import StageDisplay, eta_seconds
from syncse_ray.synth.layout import STAGED_INPUT_SCHEMA, Layout
from syncse_ray.synth.pipeline import PhaseProgress, ProgressBoard
from syncse_ray.synth.steps import (
    ChunkProgress,
    PhaseSpec,
    build_requests,
    chunk_request_count,
    finished_counts,
    observe_engine_steps,
)


def _output(finished: bool, *token_counts: int):
    return SimpleNamespace(finished=finished, outputs=[SimpleNamespace(token_ids=list(range(n)))
                                                       for n in token_counts])


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeLLM:
    """`chat` runs its requests the way vLLM's LLM does: `llm_engine.step()` until none is left; each step finishes
    `per_step` requests (4 samples of 10 tokens each)."""

    def __init__(self, per_step: int, clock: FakeClock):
        self.per_step, self.clock = per_step, clock
        self.llm_engine = SimpleNamespace(step=self._step)
        self.left = 0

    def _step(self):
        self.clock.now += 1.0
        n = min(self.per_step, self.left)
        self.left -= n
        return [_output(True, 10, 10, 10, 10) for _ in range(n)] + [_output(False, 3)]

    def chat(self, requests):
        self.left, outs = len(requests), []
        while self.left:
            outs += [o for o in self.llm_engine.step() if o.finished]
        return outs


def test_finished_counts_count_requests_and_their_samples_tokens():
    assert finished_counts([_output(True, 5, 7), _output(False, 100), _output(True, 1)]) == (2, 13)
    assert finished_counts([]) == finished_counts(None) == (0, 0)
    assert finished_counts([SimpleNamespace(finished=True, outputs=None)]) == (1, 0)


def test_chunk_progress_sends_at_most_every_interval_and_on_flush():
    clock, sent = FakeClock(), []
    progress = ChunkProgress(7, lambda *a: sent.append(a), every_s=2.0, clock=clock)
    progress.add(3, 30)
    assert sent == []
    clock.now = 2.0
    progress.add(1, 10)
    assert sent == [(7, 4, 40)]
    progress.add(1, 5)
    clock.now = 3.0
    progress.add(0, 0)
    assert sent == [(7, 4, 40)]  # throttled
    progress.flush()
    progress.flush()  # nothing new: not sent again
    assert sent == [(7, 4, 40), (7, 5, 45)]

    def broken(*_):
        raise RuntimeError("actor gone")

    failing = ChunkProgress(1, broken, every_s=0.0, clock=clock)
    failing.add(1, 1)  # a failed send never fails the chunk
    failing.flush()


def test_engine_steps_are_observed_without_changing_the_call():
    clock = FakeClock()
    llm, seen = FakeLLM(per_step=16, clock=clock), []
    assert observe_engine_steps(llm, lambda outs: seen.append(finished_counts(outs)))
    assert len(llm.chat(list(range(40)))) == 40  # all requests in one call, as before
    assert seen == [(16, 640), (16, 640), (8, 320)]

    def broken(_):
        raise ValueError("bug in the observer")

    assert observe_engine_steps(llm, broken)
    assert len(llm.chat(list(range(5)))) == 5  # the observer's failure never reaches generation
    assert not observe_engine_steps(SimpleNamespace(), broken)  # no engine to watch: per-chunk progress only


def _tracker(pending, finished=0):
    calls = []
    tracker = PhaseProgress("annotate", pending, finished, lambda *a: calls.append(a))
    return tracker, calls


def test_requests_count_as_they_finish_inside_a_running_chunk():
    """The issue: one 96-row chunk (192 requests) said 0/... until it finished. Now the engine's counts move the
    line while the chunk runs, and the chunk's summary settles the rest."""
    clock, board = FakeClock(), ProgressBoard()
    llm = FakeLLM(per_step=16, clock=clock)
    tracker, calls = _tracker({0: 192})
    tracker.start()
    assert calls == [("annotate", 0, 192, None)]

    state = {"progress": ChunkProgress(0, board.report, every_s=2.0, clock=clock)}
    observe_engine_steps(llm, lambda outs: state["progress"].add(*finished_counts(outs)))
    polled = []
    real_step = llm.llm_engine.step

    def step_and_poll():  # the driver reads the board while the chunk's call runs
        outs = real_step()
        tracker.running(board.snapshot())
        polled.append(tracker.done)
        return outs

    llm.llm_engine.step = step_and_poll
    llm.chat(list(range(190)))  # 2 of the 192 requests did not fit the context: never sent to the engine
    state["progress"].flush()
    tracker.running(board.snapshot())
    assert polled[0] == 0 and polled[1] == 32 and polled == sorted(polled)  # moved long before the chunk ended
    assert tracker.done == 190
    assert calls[1] == ("annotate", 32, 192, {"requests": 32, "output_tokens": 32 * 40})

    summary = {"chunk": 0, "kept": 50, "dropped": 46, "requests": 192, "output_tokens": 190 * 40 + 1,
               "reasons": {"duplicate": 46}}
    tracker.chunk_done(summary)
    assert tracker.done == tracker.total == 192
    last = calls[-1]
    assert last[1:3] == (192, 192) and last[3]["kept"] == 50 and last[3]["reasons"] == {"duplicate": 46}
    assert last[3]["requests"] == 2 and last[3]["output_tokens"] == 1
    added = [c[3] for c in calls[1:]]
    assert sum(a["requests"] for a in added) == 192 and sum(a["output_tokens"] for a in added) == 190 * 40 + 1


def test_phase_progress_counts_only_grow_and_ignore_finished_or_foreign_chunks():
    tracker, calls = _tracker({3: 10, 4: 10}, finished=30)
    tracker.start()
    assert calls[-1] == ("annotate", 30, 50, None)  # chunks of an earlier run count as done
    tracker.running({3: (6, 60), 4: (2, 20), 9: (5, 5)})
    assert calls[-1] == ("annotate", 38, 50, {"requests": 8, "output_tokens": 80})
    tracker.running({3: (1, 10), 4: (2, 20)})  # chunk 3 retried on a new actor: no new call, nothing taken back
    assert len(calls) == 2
    tracker.running({3: (99, 70)})  # never more requests than the chunk has
    assert calls[-1] == ("annotate", 42, 50, {"requests": 4, "output_tokens": 10})
    tracker.chunk_done({"chunk": 3, "requests": 10, "output_tokens": 65, "kept": 4, "dropped": 1})
    assert calls[-1] == ("annotate", 42, 50, {"chunk": 3, "requests": 0, "output_tokens": -5, "kept": 4,
                                              "dropped": 1})
    tracker.running({3: (10, 70), 4: (2, 20)})  # a late report of a finished chunk adds nothing
    assert len(calls) == 4
    tracker.chunk_done({"chunk": 4, "requests": 10, "output_tokens": 100, "kept": 5, "dropped": 0})
    assert tracker.done == tracker.total == 50
    added = [c[3] for c in calls[1:]]
    assert sum(a["output_tokens"] for a in added) == 165 and sum(a.get("kept", 0) for a in added) == 9


def test_progress_board_keeps_the_latest_report_per_chunk():
    board = ProgressBoard()
    board.report(1, 5, 50)
    board.report(2, 1, 9)
    board.report(1, 7, 70)
    snap = board.snapshot()
    board.report(2, 3, 30)
    assert snap == {1: (7, 70), 2: (1, 9)}  # a copy


def test_chunk_request_count_matches_the_requests_built(tmp_path):
    cfg = load_config(None, ["synth.scratch.num_requests=37", "synth.scratch.requests_per_chunk=16"]).synth
    layout = Layout(tmp_path / "synth")
    rows = [{"row": i, "id": f"p{i:09d}", "text": f"Sentence number {i} is here.",
             "drop_reason": "duplicate" if i % 3 == 0 else None} for i in range(10)]
    write_table_atomic(layout.annotate.input_chunk(0), rows, STAGED_INPUT_SCHEMA)
    annotate = PhaseSpec(layout.annotate, cfg, 0, "unused", str(tmp_path))
    assert chunk_request_count(annotate, 0) == len(build_requests(annotate, 0)) == 2 * 6
    sentences = PhaseSpec(layout.sentences, cfg, 0, "unused", str(tmp_path))
    assert [chunk_request_count(sentences, c) for c in range(4)] == [16, 16, 5, 0]
    assert [len(build_requests(sentences, c)) for c in range(3)] == [16, 16, 5]


def test_eta_is_the_rate_since_the_baseline():
    assert eta_seconds(60, 10, 100) == pytest.approx(540)
    assert eta_seconds(60, 60, 100, base=50) == pytest.approx(240)  # 10 done in 60 s, 40 left
    assert eta_seconds(90, 1, 256) is None  # one request after the engine's start-up says nothing yet
    for args in ((60, 0, 100), (60, None, 100), (60, 100, 100), (60, 5, None), (60, 50, 100, 50), (0, 5, 10)):
        assert eta_seconds(*args) is None


def test_stage_line_eta_counts_from_when_the_total_was_set(monkeypatch):
    from syncse_ray.pipeline import console

    now = [1000.0]
    monkeypatch.setattr(console.time, "time", lambda: now[0])
    display = StageDisplay(console.Console(), "synth", interactive=False, interval=30)
    now[0] += 120  # starting Ray, staging the input
    display.update(150, 200, phase="annotate")  # 150 requests done by an earlier run
    now[0] += 60
    assert "eta" not in display.line()  # nothing done in this run yet
    display.update(160)
    assert display.line() == "synth: 160/200 phase annotate elapsed 3:00 eta 4:00"  # 10 a minute, 40 left
    display.update(0, 40, phase="annotate")  # a new phase: a new total, a new rate
    now[0] += 30
    display.update(20)
    assert display.line().endswith("elapsed 3:30 eta 0:30")
