"""Prompt data (instructions, exemplars, genres, topics) and request building. Pure: no Ray, no vLLM.

Every request is seeded from (run seed, row index, request kind) by an injective formula, so a run is
reproducible and no two requests of a run share a seed. The same seed drives the choice of instruction and
exemplars (here) and the LLM's sampling (the engine stage).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from syncse_ray.errors import SyncseError
from syncse_ray.synth.filters import normalize

POSITIVE, HARD_NEGATIVE, SENTENCES = "positive", "hard_negative", "sentences"
KIND_CODES = {POSITIVE: 0, HARD_NEGATIVE: 1, SENTENCES: 2}
PROMPT_FILES = ("instructions.json", "exemplars.json", "genres.json", "topics.txt")
_ROW_BITS = 40  # rows per run below 2**40: seeds stay injective in (row, kind) for a fixed run seed
# vLLM gives the i-th of n samples the seed `seed + i`; the low bits are left free so that the candidates of
# different requests never share a seed (up to 2**5 candidates per request).
CANDIDATE_BITS = 5


class PromptError(SyncseError, ValueError):
    """Prompt data that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Instruction:
    id: str
    text: str


@dataclass(frozen=True)
class Exemplar:
    id: str
    input: str
    output: str


@dataclass(frozen=True)
class Genre:
    name: str
    description: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class PromptPack:
    """Everything requests are built from; loaded from the package or a user's `prompt_dir`."""

    instructions: dict[str, tuple[Instruction, ...]]  # kind -> pool
    exemplars: dict[str, tuple[Exemplar, ...]]  # positive / hard_negative -> pool
    genres: tuple[Genre, ...]
    topics: tuple[str, ...]
    echo_texts: frozenset[str] = field(default_factory=frozenset)  # normalized prompt texts an output must not be


@dataclass(frozen=True)
class Request:
    """One LLM call: the chat, its seed and what it was built from (provenance)."""

    row: int  # dense row index (annotation) or request index (sentence writing)
    kind: str
    seed: int
    messages: list[dict[str, str]]
    instruction_id: str
    exemplar_ids: list[str]
    genre: str | None = None
    topics: list[str] | None = None

    def prefix_key(self) -> tuple:
        """Requests with equal keys share their whole prompt up to the real input."""
        return (self.kind, self.instruction_id, tuple(self.exemplar_ids), self.genre or "")

    def to_json(self) -> dict:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, data: dict) -> Request:
        return cls(**data)


def request_seed(run_seed: int, row: int, kind: str) -> int:
    """Distinct for distinct (row, kind) within a run, and so are seed + i for i < 2**CANDIDATE_BITS (the seeds
    of a request's candidates); fits vLLM's 64-bit seeds."""
    if not 0 <= row < 1 << _ROW_BITS:
        raise ValueError(f"row index {row} out of range")
    run_bits = 63 - _ROW_BITS - 2 - CANDIDATE_BITS
    seed = (run_seed % (1 << run_bits)) << (_ROW_BITS + 2) | row << 2 | KIND_CODES[kind]
    return seed << CANDIDATE_BITS


def _read_prompt_file(name: str, prompt_dir: Path | None) -> str:
    if prompt_dir is not None and (Path(prompt_dir) / name).is_file():
        return (Path(prompt_dir) / name).read_text(encoding="utf-8")
    return resources.files("syncse_ray.synth").joinpath("data", name).read_text(encoding="utf-8")


def _parse_pack(texts: dict[str, str]) -> PromptPack:
    try:
        instr = json.loads(texts["instructions.json"])
        exem = json.loads(texts["exemplars.json"])
        genres_raw = json.loads(texts["genres.json"])
        instructions = {k: tuple(Instruction(i["id"], i["text"]) for i in instr[k])
                        for k in (POSITIVE, HARD_NEGATIVE, "scratch")}
        exemplars = {k: tuple(Exemplar(e["id"], e["input"], e["output"]) for e in exem[k])
                     for k in (POSITIVE, HARD_NEGATIVE)}
        genres = tuple(Genre(g["name"], g["description"], tuple(g["examples"])) for g in genres_raw)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PromptError(f"prompt data is malformed: {type(exc).__name__}: {exc}") from None
    topics = tuple(t.strip() for t in texts["topics.txt"].splitlines() if t.strip())
    for kind, pool in instructions.items():
        if not pool:
            raise PromptError(f"instructions.json: no {kind} instructions")
        ids = [i.id for i in pool]
        if len(set(ids)) != len(ids):
            raise PromptError(f"instructions.json: duplicate {kind} instruction ids")
    for kind, pool in exemplars.items():
        if len({e.id for e in pool}) != len(pool):
            raise PromptError(f"exemplars.json: duplicate {kind} exemplar ids")
    if not genres or not topics:
        raise PromptError("genres.json and topics.txt must each hold at least one entry")
    echo = {normalize(i.text) for pool in instructions.values() for i in pool}
    echo |= {normalize(t) for pool in exemplars.values() for e in pool for t in (e.input, e.output)}
    echo |= {normalize(s) for g in genres for s in g.examples}
    return PromptPack(instructions, exemplars, genres, topics, frozenset(echo))


@lru_cache(maxsize=8)
def load_prompt_pack(prompt_dir: str | None = None) -> PromptPack:
    """The packaged prompt data, each file replaced by the one of the same name in `prompt_dir` if present."""
    if prompt_dir is not None and not Path(prompt_dir).is_dir():
        raise PromptError(f"prompt_dir {prompt_dir} is not a folder")
    return _parse_pack({name: _read_prompt_file(name, Path(prompt_dir) if prompt_dir else None)
                        for name in PROMPT_FILES})


def check_pack(pack: PromptPack, num_exemplars: int, topics_per_request: int,
               genres: list[str] | None = None) -> None:
    """Fail before any work starts when the pools are too small for the config or a genre is unknown."""
    unknown = sorted(set(genres or []) - {g.name for g in pack.genres})
    if unknown:
        raise PromptError(f"unknown genres {unknown}; genres.json has {[g.name for g in pack.genres]}")
    for kind, pool in pack.exemplars.items():
        if len(pool) < num_exemplars:
            raise PromptError(f"{kind} exemplar pool has {len(pool)} pairs, num_exemplars is {num_exemplars}")
    if len(pack.topics) < topics_per_request:
        raise PromptError(f"topics.txt has {len(pack.topics)} topics, topics_per_request is {topics_per_request}")


def annotation_request(pack: PromptPack, *, row: int, text: str, kind: str, run_seed: int,
                       num_exemplars: int, prefix_aware: bool, exemplar_sets: int | None = None) -> Request:
    """A positive or hard-negative request: instruction as system turn, exemplar turns, then the sentence.

    The exemplar set is a seeded sample of the pool; `prefix_aware` lays it out in pool order (same sets,
    more shared prompt prefix between requests) instead of the sampled order. With `exemplar_sets` = m, each
    (kind, instruction) has m fixed sets (seeded by the run) and a request draws one of them, so the whole
    prompt but the sentence is shared by many requests (what the engine's prefix cache reuses); None samples
    a set per request (with 5 of 20 exemplars: 15,504 possible sets)."""
    seed = request_seed(run_seed, row, kind)
    rng = random.Random(seed)
    instruction = rng.choice(pack.instructions[kind])
    pool = pack.exemplars[kind]
    if exemplar_sets is None:
        picked = rng.sample(range(len(pool)), num_exemplars)
    else:
        which = rng.randrange(exemplar_sets)
        picked = random.Random(f"{run_seed}:{kind}:{instruction.id}:{which}").sample(range(len(pool)), num_exemplars)
    if prefix_aware:
        picked.sort()
    messages = [{"role": "system", "content": instruction.text}]
    for i in picked:
        messages += [{"role": "user", "content": pool[i].input}, {"role": "assistant", "content": pool[i].output}]
    messages.append({"role": "user", "content": text})
    return Request(row, kind, seed, messages, instruction.id, [pool[i].id for i in picked])


def sentence_request(pack: PromptPack, *, index: int, run_seed: int, sentences: int, topics: int,
                     genres: list[str] | None = None) -> Request:
    """A scratch sentence-writing request: one genre with its one-shot examples, `topics` random topics."""
    seed = request_seed(run_seed, index, SENTENCES)
    rng = random.Random(seed)
    pool = [g for g in pack.genres if genres is None or g.name in genres]
    if not pool:
        raise PromptError(f"none of the genres {genres} is in genres.json")
    genre = rng.choice(pool)
    chosen = rng.sample(pack.topics, topics)
    instruction = rng.choice(pack.instructions["scratch"])
    examples = "\n".join(f"{k}. {s}" for k, s in enumerate(genre.examples, 1))
    content = instruction.text.format(genre=genre.name, description=genre.description, examples=examples,
                                      n=sentences, topics=", ".join(chosen))
    return Request(index, SENTENCES, seed, [{"role": "user", "content": content}], instruction.id, [],
                   genre=genre.name, topics=chosen)


def order_for_prefix_cache(requests: list[Request]) -> list[Request]:
    """Requests grouped by shared prefix, so the engine runs them together while their prefix is cached."""
    return sorted(requests, key=lambda r: (r.prefix_key(), r.row))
