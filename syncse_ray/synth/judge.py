"""The judges that score candidates. Prompts and scoring are pure; the embedding judge is a Ray Data actor
(the class is plain Python: Ray Data constructs it once per actor).

- embedding: cos(anchor, candidate) under an encoder the project can load (`syncse_ray.models.encoders.load_encoder`).
- llm: the synthesis engine asked one yes/no question per candidate, answered in one token; the score is
  P(yes) / (P(yes) + P(no)) from the first token's log-probabilities (every top token that reads "yes" or
  "no" once stripped and lower-cased counts), not parsed prose. 0.5 when neither appears in the top tokens.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from syncse_ray.models.vectors import cosine_rows
from syncse_ray.synth.prompts import HARD_NEGATIVE, POSITIVE

LLM_TOP_LOGPROBS = 20
_QUESTIONS = {
    POSITIVE: "If sentence A is true, is sentence B necessarily true as well?",
    HARD_NEGATIVE: "Do sentence A and sentence B contradict each other, so that both cannot be true at once?",
}


def uses_embedding(method: str) -> bool:
    return "embedding" in method


def uses_llm(method: str) -> bool:
    return "llm" in method


def llm_judge_messages(anchor: str, candidate: str, kind: str) -> list[dict[str, str]]:
    """The yes/no question for one candidate; the sentence pair comes last so the question is a shared prefix."""
    return [{"role": "system", "content": "You judge pairs of sentences. Answer with one word: yes or no."},
            {"role": "user", "content": f"{_QUESTIONS[kind]}\nSentence A: {anchor}\nSentence B: {candidate}"}]


def yes_probability(top_logprobs: dict[str, float]) -> float:
    """P(yes) / (P(yes) + P(no)) over the first answer token's top alternatives {decoded token: logprob}."""
    yes = sum(math.exp(lp) for tok, lp in top_logprobs.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in top_logprobs.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else 0.5


def score_embeddings(encoder, entries: list[dict[str, Any]]) -> None:
    """Set `sim` on every candidate that passed the filters (in place). One encode call per chunk: the distinct
    anchors and candidate texts."""
    pairs = [(e["anchor"], c) for e in entries for kind in (POSITIVE, HARD_NEGATIVE) for c in e[kind]
             if c["reason"] is None]
    if not pairs:
        return
    texts = list(dict.fromkeys(t for a, c in pairs for t in (a, c["text"])))
    vecs = encoder.encode(texts, show_progress=False)
    row = {t: i for i, t in enumerate(texts)}
    sims = cosine_rows(vecs[[row[a] for a, _ in pairs]], vecs[[row[c["text"]] for _, c in pairs]])
    for (_, c), s in zip(pairs, sims):
        c["sim"] = float(s)


class TextEncoder:
    """Ray Data actor: one encoder per actor (judge_cfg: model, pooler, batch size, GPUs); `vec` for each
    `text` of a batch."""

    def __init__(self, judge_cfg, cache_dir: str | None):
        import torch

        from syncse_ray.models.encoders import load_encoder

        device = "cuda" if judge_cfg.num_gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.encoder = load_encoder(judge_cfg.model, pooler=judge_cfg.pooler, batch_size=judge_cfg.batch_size,
                                    cache_dir=cache_dir, device=device, precision=judge_cfg.precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode(list(batch["text"]), show_progress=False)
        return {"i": batch["i"], "vec": np.asarray(vecs, dtype=np.float32)}


class EmbeddingJudge(TextEncoder):
    """Ray Data actor: scores a chunk's candidates (the `candidates` JSON column)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out = {k: list(v) for k, v in batch.items()}
        judged = []
        for payload in batch["candidates"]:
            entries = json.loads(payload)
            score_embeddings(self.encoder, entries)
            judged.append(json.dumps(entries))
        out["candidates"] = judged
        return out
