"""Synth stage, pure parts: prompt data, request building and seeding, parsing, filters, stats, input reading.
No Ray, no engine."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syncse_ray.synth import filters
from syncse_ray.synth.inputs import SynthInputError, iter_input_sentences
from syncse_ray.synth.parsing import clean_generation, split_sentence_list
from syncse_ray.synth.prompts import (
    HARD_NEGATIVE,
    POSITIVE,
    SENTENCES,
    PromptError,
    annotation_request,
    check_pack,
    load_prompt_pack,
    order_for_prefix_cache,
    request_seed,
    sentence_request,
)

PACK = load_prompt_pack(None)


def test_packaged_prompt_data_meets_the_paper_setup():
    assert len(PACK.instructions[POSITIVE]) == 4 and len(PACK.instructions[HARD_NEGATIVE]) == 4
    assert len(PACK.instructions["scratch"]) == 4
    assert min(len(PACK.exemplars[POSITIVE]), len(PACK.exemplars[HARD_NEGATIVE])) >= 18
    assert len(PACK.genres) >= 21 and all(len(g.examples) == 10 and g.description for g in PACK.genres)
    assert len(PACK.topics) == 37 and "COVID-19" in PACK.topics and "mental health" in PACK.topics
    for instr in PACK.instructions["scratch"]:  # every template fills without a KeyError
        instr.text.format(genre="g", description="d", examples="e", n=20, topics="t")


def test_annotation_request_layout_and_reproducibility():
    req = annotation_request(PACK, row=7, text="A cat sat on the mat.", kind=POSITIVE, run_seed=3,
                             num_exemplars=5, prefix_aware=False)
    roles = [m["role"] for m in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert req.messages[-1]["content"] == "A cat sat on the mat."
    assert req.messages[0]["content"] in {i.text for i in PACK.instructions[POSITIVE]}
    again = annotation_request(PACK, row=7, text="A cat sat on the mat.", kind=POSITIVE, run_seed=3,
                               num_exemplars=5, prefix_aware=False)
    assert again == req
    other_seed = annotation_request(PACK, row=7, text="A cat sat on the mat.", kind=POSITIVE, run_seed=4,
                                    num_exemplars=5, prefix_aware=False)
    assert other_seed.seed != req.seed


def test_prefix_aware_layout_keeps_the_sampled_exemplar_set_in_pool_order():
    order = [e.id for e in PACK.exemplars[HARD_NEGATIVE]]
    for row in range(50):
        naive = annotation_request(PACK, row=row, text="x y z", kind=HARD_NEGATIVE, run_seed=0, num_exemplars=5,
                                   prefix_aware=False)
        aware = annotation_request(PACK, row=row, text="x y z", kind=HARD_NEGATIVE, run_seed=0, num_exemplars=5,
                                   prefix_aware=True)
        assert set(aware.exemplar_ids) == set(naive.exemplar_ids)
        assert aware.instruction_id == naive.instruction_id and aware.seed == naive.seed
        assert aware.exemplar_ids == sorted(aware.exemplar_ids, key=order.index)
    reqs = [annotation_request(PACK, row=r, text="t", kind=k, run_seed=0, num_exemplars=5, prefix_aware=True)
            for r in range(40) for k in (POSITIVE, HARD_NEGATIVE)]
    keys = [r.prefix_key() for r in order_for_prefix_cache(reqs)]
    assert keys == sorted(keys)


def test_seeds_are_distinct_per_row_and_kind():
    seeds = {request_seed(5, row, kind) for row in range(20_000) for kind in (POSITIVE, HARD_NEGATIVE, SENTENCES)}
    assert len(seeds) == 60_000
    assert all(0 <= s < 2**63 for s in seeds)
    # vLLM seeds the i-th of n samples with seed + i: candidates of different requests never share a seed.
    candidate_seeds = {s + i for s in seeds for i in range(32)}
    assert len(candidate_seeds) == 60_000 * 32 and max(candidate_seeds) < 2**63
    with pytest.raises(ValueError, match="row index -1 out of range"):
        request_seed(0, -1, POSITIVE)


def test_sentence_request():
    req = sentence_request(PACK, index=3, run_seed=0, sentences=20, topics=6, genres=["news", "headlines"])
    assert req.genre in {"news", "headlines"} and len(set(req.topics)) == 6
    content = req.messages[0]["content"]
    assert "20" in content and all(t in content for t in req.topics) and req.genre in content
    genre = next(g for g in PACK.genres if g.name == req.genre)
    assert genre.examples[0] in content  # the one-shot example sentences
    assert req == sentence_request(PACK, index=3, run_seed=0, sentences=20, topics=6, genres=["news", "headlines"])
    with pytest.raises(PromptError, match="unknown genres"):
        check_pack(PACK, 5, 6, ["no-such-genre"])
    with pytest.raises(PromptError, match="exemplar pool"):
        check_pack(PACK, 50, 6)


def test_prompt_dir_replaces_files(tmp_path):
    (tmp_path / "topics.txt").write_text("only\ntwo\n")
    pack = load_prompt_pack(str(tmp_path))
    assert pack.topics == ("only", "two") and pack.exemplars == PACK.exemplars
    with pytest.raises(PromptError, match="topics"):
        check_pack(pack, 5, 6)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "exemplars.json").write_text("{not json")
    with pytest.raises(PromptError, match="malformed"):
        load_prompt_pack(str(bad))
    with pytest.raises(PromptError, match="not a folder"):
        load_prompt_pack(str(tmp_path / "missing"))


@pytest.mark.parametrize("raw, expected", [
    ("The cat slept on the mat.", "The cat slept on the mat."),
    ('"The cat slept on the mat."', "The cat slept on the mat."),
    ("Sure! Here is a paraphrase:\n\nThe cat slept on the mat.", "The cat slept on the mat."),
    ("Sure, here's the rewritten sentence: The cat slept on the mat.", "The cat slept on the mat."),
    ("Output: The cat slept on the mat.", "The cat slept on the mat."),
    ("Paraphrase: “The cat slept on the mat.”", "The cat slept on the mat."),
    ("1. The cat slept on the mat.", "The cat slept on the mat."),
    ("The dog slept on the mat. (Changed 'cat' to 'dog'.)", "The dog slept on the mat."),
    ("The dog slept on the mat.\n\nExplanation: I replaced the animal.", "The dog slept on the mat."),
    ("**The dog slept on the mat.**", "The dog slept on the mat."),
    ("Breaking: heavy snow closes all airports.", "Breaking: heavy snow closes all airports."),
    ("   \n  ", ""),
])
def test_clean_generation(raw, expected):
    assert clean_generation(raw) == expected


def test_split_sentence_list():
    raw = ("Here are 4 sentences about the topics:\n1. The market opened early.\n2) Is the river rising?\n"
           "3. \"What a day!\"\n\n4. Rain.\nI hope these help!")
    assert split_sentence_list(raw) == ["The market opened early.", "Is the river rising?", "What a day!", "Rain."]
    assert split_sentence_list("First line.\nSecond line.") == ["First line.", "Second line."]
    paragraph = "The tide came in fast. Did anyone see the boat? Yes, at 3.30 today!"
    assert split_sentence_list(paragraph) == ["The tide came in fast.", "Did anyone see the boat?",
                                              "Yes, at 3.30 today!"]
    assert split_sentence_list("") == []


@pytest.mark.parametrize("candidate, reason", [
    ("", filters.EMPTY),
    ("...", filters.EMPTY),
    ("I'm sorry, but I cannot help with that.", filters.REFUSAL),
    ("As an AI language model, I can't change the meaning.", filters.REFUSAL),
    ("The vote was put off by the committee until next Tuesday.", filters.PROMPT_ECHO),
    ("a cat ran home", filters.ANCHOR_COPY),
    ("A cat ran home!", filters.ANCHOR_COPY),
    ("Cat.", filters.TOO_SHORT),
    ("A feline went home " + "and then further " * 30, filters.TOO_LONG),
    ("A feline went home.", None),
])
def test_candidate_filters(candidate, reason):
    got = filters.candidate_drop_reason("A cat ran home.", candidate, echo_texts=PACK.echo_texts,
                                        min_words=2, max_words=64)
    assert got == reason


def test_deduplicator_exact_and_near():
    dedup = filters.Deduplicator(0.8)
    base = "the quick brown fox jumps over the lazy dog near the old river bank today"
    assert dedup.check(base) is None
    assert dedup.check(base.upper() + "!") == filters.DUPLICATE
    assert dedup.check(base + " again") == filters.NEAR_DUPLICATE
    assert dedup.check("a completely different sentence about markets and prices") is None
    dedup.new_window()
    assert dedup.check(base + " again") is None  # near duplicates are looked for within a window only
    assert dedup.check(base) == filters.DUPLICATE  # exact ones across windows


def test_diversity_stats():
    assert filters.distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert filters.distinct_n([], 2) == 0.0
    assert filters.duplicate_rate(["A b.", "a b", "c d", "e f"]) == pytest.approx(0.25)


def test_input_formats(tmp_path):
    txt = tmp_path / "s.txt"
    txt.write_text("one\n\nthree\n")
    assert list(iter_input_sentences(txt, "text")) == ["one", "", "three"]
    assert list(iter_input_sentences(txt, "text", limit=2)) == ["one", ""]
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(json.dumps({"sentence": "a"}) + "\n" + json.dumps({"sentence": "b"}) + "\n")
    assert list(iter_input_sentences(jsonl, "sentence")) == ["a", "b"]
    pq.write_table(pa.table({"sentence": ["p", None]}), tmp_path / "s.parquet")
    assert list(iter_input_sentences(tmp_path / "s.parquet", "sentence")) == ["p", ""]
    (tmp_path / "s.csv").write_text("id,sentence\n1,\"x, y\"\n2,z\n")
    assert list(iter_input_sentences(tmp_path / "s.csv", "sentence")) == ["x, y", "z"]


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(SynthInputError, match="not found"):
        list(iter_input_sentences(tmp_path / "missing.txt", "text"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SynthInputError, match="empty"):
        list(iter_input_sentences(tmp_path / "empty.txt", "text"))
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SynthInputError, match="not valid UTF-8 at line 2"):
        list(iter_input_sentences(tmp_path / "latin1.txt", "text"))
    (tmp_path / "s.jsonl").write_text(json.dumps({"sentence": "a"}) + "\n")
    with pytest.raises(SynthInputError, match="no column 'text'"):
        list(iter_input_sentences(tmp_path / "s.jsonl", "text"))
    pq.write_table(pa.table({"sentence": ["p"]}), tmp_path / "s.parquet")
    with pytest.raises(SynthInputError, match=r"no column 'text' \(has \['sentence'\]\)"):
        list(iter_input_sentences(tmp_path / "s.parquet", "text"))
    (tmp_path / "s.csv").write_text("sentence\nq\n")
    with pytest.raises(SynthInputError, match="no column 'text'"):
        list(iter_input_sentences(tmp_path / "s.csv", "text"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SynthInputError, match="not a readable Parquet"):
        list(iter_input_sentences(tmp_path / "broken.parquet", "text"))
    (tmp_path / "s.xlsx").write_text("x")
    with pytest.raises(SynthInputError, match="unknown format.*synth.input_format"):
        list(iter_input_sentences(tmp_path / "s.xlsx", "text"))
    # SentEval's SNLI files (s1.test: one premise a line) are read as text when the format is named
    (tmp_path / "s1.test").write_text("a premise .\na premise .\nanother .\n")
    assert list(iter_input_sentences(tmp_path / "s1.test", "text", limit=2, fmt="text")) == ["a premise ."] * 2


def test_reaper_ends_engine_processes_after_their_owner():
    """An owner process starts a child (standing in for the engine's processes) and the reaper, then exits:
    the child must be killed shortly after, by the reaper that outlives the owner."""
    import subprocess
    import sys
    import time

    import psutil

    owner = ("import subprocess\nfrom syncse_ray.synth.reaper import start_reaper\n"
             "child = subprocess.Popen(['sleep', '300'])\nprint(child.pid, flush=True)\nstart_reaper()\n")
    child = psutil.Process(int(subprocess.run([sys.executable, "-c", owner], capture_output=True, text=True,
                                              check=True).stdout.split()[0]))
    try:
        assert child.is_running()  # the owner is gone, its child lives on: what vLLM's worker did
        deadline = time.time() + 30
        while time.time() < deadline and child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.5)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if child.is_running():
            child.kill()


def test_cpu_thread_binding_maps_to_vllm_cpu_environment():
    from syncse_ray.config import load_config
    from syncse_ray.synth.engine import cpu_binding_env

    assert cpu_binding_env(load_config(None, []).synth.engine) == {}  # vLLM's own default ("auto")
    engine = load_config(None, ["synth.engine.cpu_threads_bind=0-1", "synth.engine.cpu_reserved_cores=0"]).synth.engine
    assert cpu_binding_env(engine) == {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    every = load_config(None, ["synth.engine.cpu_threads_bind=all"]).synth.engine
    assert cpu_binding_env(every, cores={3, 0, 1}) == {"VLLM_CPU_OMP_THREADS_BIND": "0,1,3"}


def test_fixed_exemplar_sets_share_whole_prefixes():
    """With m fixed sets per (kind, instruction), requests draw from at most m sets each, stable for a run."""
    def sets(run_seed, exemplar_sets):
        return {(r.instruction_id, tuple(r.exemplar_ids)) for r in (
            annotation_request(PACK, row=row, text="a sentence", kind=POSITIVE, run_seed=run_seed, num_exemplars=5,
                               prefix_aware=True, exemplar_sets=exemplar_sets) for row in range(300))}

    fixed = sets(0, 3)
    instructions = {i for i, _ in fixed}
    assert len(fixed) <= 3 * len(instructions) and fixed == sets(0, 3)
    assert len(sets(0, None)) > 3 * len(instructions)  # a fresh sample per request
    assert sets(1, 3) != fixed  # the sets are the run's


def test_engine_threads_counts_the_bound_cores():
    from syncse_ray.config import load_config
    from syncse_ray.synth.engine import engine_threads

    def engine(bind):
        return load_config(None, [f"synth.engine.cpu_threads_bind={bind}"]).synth.engine

    assert engine_threads(load_config(None, []).synth.engine) is None  # vLLM's "auto": its choice
    assert engine_threads(engine("nobind")) is None
    assert engine_threads(engine("all"), cores={0, 1, 5}) == 3
    assert engine_threads(engine("0-3,6")) == 5
    assert engine_threads(engine("0-1|2-3")) == 4


def test_an_engine_actor_starts_with_the_bound_cores_as_its_thread_count():
    from syncse_ray.config import load_config
    from syncse_ray.synth.engine import engine_actor_env

    every = load_config(None, ["synth.engine.cpu_threads_bind=all"]).synth.engine
    assert engine_actor_env(every, cores={0, 1}) == {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}}}
    assert engine_actor_env(load_config(None, []).synth.engine) == {}  # vLLM's choice: Ray's default stays


def test_engine_actors_ask_for_the_custom_resources_the_config_names():
    from syncse_ray.config import load_config
    from syncse_ray.synth.pipeline import _writer_step
    from syncse_ray.synth.steps import PhaseSpec

    def ray_options(*overrides: str) -> dict:
        cfg = load_config(None, list(overrides)).synth
        spec = PhaseSpec(layout=None, cfg=cfg, run_seed=0, model_path="m", data_dir="d")
        _, _, options, actors = _writer_step(spec, None, None)
        return {**options, "actors": actors}

    pinned = ray_options("synth.engine.resources={vllm_node: 1}", "synth.engine.num_engines=2")
    assert pinned["resources"] == {"vllm_node": 1.0} and pinned["actors"] == 2
    assert "resources" not in ray_options()  # nothing named: Ray's CPU/GPU accounting alone
