"""Decontamination: keep evaluation sentences out of training data. Pure Python (reads files, no Ray).

The index holds every sentence of the STS evaluation sets in the data dir (STS12–16, STS-B dev and test, SICK-R
trial and test). A text overlaps when its normalised form equals an indexed sentence's, or when the Jaccard
similarity of their word n-grams reaches the threshold. The synth stage drops input sentences, written
sentences (scratch) and LLM candidates that overlap, with the reason ``eval_overlap``.
"""

from __future__ import annotations

from pathlib import Path

from syncse_ray.data.datadir import fetch_command
from syncse_ray.errors import SyncseError
from syncse_ray.synth.filters import NgramIndex, text_hash


class DecontaminationError(SyncseError, FileNotFoundError):
    """Decontamination is on but no evaluation set was found in the data dir."""


def eval_sentences(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """Every sentence of the STS evaluation sets found in the data dir, and the names of those sets."""
    from syncse_ray.data.senteval import STS_YEAR_SUBSETS, DataError, read_sick, read_sts_year, read_stsb

    readers = [(year, lambda y=year: read_sts_year(data_dir, y)) for year in STS_YEAR_SUBSETS]
    readers += [(f"STSBenchmark-{split}", lambda s=split: read_stsb(data_dir, s)) for split in ("dev", "test")]
    readers += [(f"SICK-{split}", lambda s=split: read_sick(data_dir, s)) for split in ("dev", "test")]
    sentences, found = [], []
    for name, read in readers:
        try:
            data = read()
        except DataError:
            continue
        sentences.extend(data.s1)
        sentences.extend(data.s2)
        found.append(name)
    return sentences, found


class EvalOverlapIndex:
    """Exact (normalised) and near-duplicate (word n-gram Jaccard) lookup of evaluation sentences."""

    def __init__(self, sentences: list[str], *, ngram: int = 3, near_threshold: float = 0.8,
                 sources: list[str] | None = None):
        self.sources = sources or []
        self._exact = {text_hash(s) for s in sentences}
        self._near = NgramIndex(near_threshold, ngram)
        for s in dict.fromkeys(sentences):
            self._near.add(s)

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, *, ngram: int = 3, near_threshold: float = 0.8) -> EvalOverlapIndex:
        sentences, sources = eval_sentences(data_dir)
        if not sentences:
            raise DecontaminationError(
                f"synth.decontamination is on but no evaluation set was found under {data_dir}/senteval "
                f"(STS12-16, STS-B, SICK); run: {fetch_command(data_dir)} (or set data_dir to the benchmark "
                f"data, or synth.decontamination.enabled=false to train without this check)")
        return cls(sentences, ngram=ngram, near_threshold=near_threshold, sources=sources)

    def __len__(self) -> int:
        return len(self._exact)

    def overlaps(self, text: str) -> bool:
        return text_hash(text) in self._exact or self._near.match(text)
