"""TestbedConfig: seed, languages, the low-resource target and the sizes of every split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from ..errors import UserError, unknown_name_error
from .naming import LANGUAGES

# Bump whenever generated content changes for the same config: it is part of the cache key.
GENERATOR_VERSION = 1

TASKS = ("commit-message", "code-generation", "code-translation")


@dataclass(frozen=True)
class TestbedConfig:
    """Sizes are per language. The target language gets `target_train_ratio` of the train
    records (about 10x fewer by default) but full-size validation and test splits, so
    evaluating on it stays meaningful.

    Defaults are sized for a 2-core CPU demo: 2,000 train records per high-resource
    language and task, 200 for ruby, 100 validation and 200 test records per language.
    """

    __test__ = False  # not a pytest test class despite the name

    seed: int = 0
    languages: tuple[str, ...] = LANGUAGES
    target_language: str = "ruby"
    train_per_language: int = 2000
    target_train_ratio: float = 0.1
    validation_per_language: int = 100
    test_per_language: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        for language in self.languages:
            if language not in LANGUAGES:
                raise unknown_name_error("testbed language", language, LANGUAGES)
        if len(set(self.languages)) != len(self.languages) or len(self.languages) < 2:
            raise UserError(
                f"testbed languages: need two or more distinct languages, got {list(self.languages)}"
            )
        if self.target_language not in self.languages:
            raise UserError(
                f"testbed target_language '{self.target_language}' is not one of the languages "
                f"{list(self.languages)}"
            )
        for key in ("train_per_language", "validation_per_language", "test_per_language"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"testbed {key} must be a positive integer, got {value!r}")
        if not 0 < self.target_train_ratio <= 1:
            raise UserError(
                f"testbed target_train_ratio must be in (0, 1], got {self.target_train_ratio!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"testbed seed must be an integer, got {self.seed!r}")

    def train_size(self, language: str) -> int:
        """Train records for `language`: full for high-resource languages, fewer for the target."""
        if language == self.target_language:
            return max(1, round(self.train_per_language * self.target_train_ratio))
        return self.train_per_language

    def weight(self, language: str) -> float:
        """How often `language` is drawn as a translation source in train (target: rarer)."""
        return self.target_train_ratio if language == self.target_language else 1.0

    def cache_key(self) -> str:
        """Hash of every setting and the generator version: the cache folder name."""
        payload = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
