"""Synthetic repositories and file paths for commit records (`acme/ledger-py`, `lib/...rb`)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .naming import camel, kebab, pascal, snake
from .render import FileLayout
from .vocab import OWNERS, PROJECT_SUFFIXES

PROJECT_WORDS = (
    "ledger",
    "atlas",
    "harbor",
    "beacon",
    "quill",
    "orbit",
    "cinder",
    "sprout",
    "vertex",
    "meadow",
    "summit",
    "tandem",
    "relay",
    "prism",
    "canopy",
    "lantern",
    "mosaic",
    "pilot",
    "ripple",
    "granite",
    "compass",
    "willow",
    "falcon",
    "juniper",
)
LANGUAGE_TAGS = {"python": "py", "javascript": "js", "java": "java", "go": "go", "ruby": "rb"}
# Commit records per repository. Equal-sized repositories make a split that holds out a
# fraction of the repositories hold out the same fraction of the records.
REPO_SIZE = 25


@dataclass(frozen=True)
class Repo:
    owner: str
    project: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.project}"


def make_repos(language: str, count: int, rng: random.Random) -> list[Repo]:
    """`count` distinct repositories for one language."""
    repos: dict[str, Repo] = {}
    while len(repos) < count:
        word = rng.choice(PROJECT_WORDS)
        style = rng.random()
        if style < 0.4:
            project = f"{word}-{LANGUAGE_TAGS[language]}"
        elif style < 0.8:
            project = f"{word}-{rng.choice(PROJECT_SUFFIXES)}"
        else:
            project = word
        repo = Repo(rng.choice(OWNERS), project)
        repos[repo.full_name] = repo
    return list(repos.values())


def file_for(
    language: str, repo: Repo, package: str, module: tuple[str, ...], rng: random.Random
) -> tuple[str, FileLayout]:
    """A realistic path for a library file and the layout its renderer needs."""
    layout = FileLayout(package=(package,), module=module, owner=repo.owner)
    base = repo.project.split("-")[0]
    if language == "python":
        folder = rng.choice([f"{base}/{package}", f"src/{base}/{package}", package])
        return f"{folder}/{snake(module)}.py", layout
    if language == "javascript":
        name = rng.choice([camel(module), kebab(module)])
        return f"{rng.choice(['src', 'lib', f'src/{package}'])}/{name}.js", layout
    if language == "java":
        return f"src/main/java/com/{repo.owner}/{package}/{pascal(module)}.java", layout
    if language == "go":
        folder = rng.choice([package, f"internal/{package}", f"pkg/{package}"])
        return f"{folder}/{snake(module)}.go", layout
    return f"lib/{base}/{snake(module)}.rb", layout
