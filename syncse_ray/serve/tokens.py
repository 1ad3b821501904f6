"""Token counting for `usage`: each input counts the tokens the model actually sees, i.e. after truncation to
its max tokens (special tokens included)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenCounts:
    lengths: list[int]  # tokens in each input before truncation
    max_tokens: int  # the model's limit; longer inputs are cut to it

    @property
    def per_input(self) -> list[int]:
        """Tokens embedded for each input, after truncation."""
        return [min(n, self.max_tokens) for n in self.lengths]

    @property
    def truncated(self) -> int:
        """How many inputs were longer than max_tokens."""
        return sum(n > self.max_tokens for n in self.lengths)

    @property
    def total(self) -> int:
        return sum(self.per_input)


def token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens per text with a Hugging Face tokenizer, special tokens included, without truncation."""
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False,
                                          verbose=False)["input_ids"]]


def count_tokens(tokenizer: Any, texts: list[str], max_tokens: int) -> TokenCounts:
    return TokenCounts(token_lengths(tokenizer, texts), max_tokens)
