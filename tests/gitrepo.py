"""Real git repositories for tests: an isolated git environment and a bare remote with a work clone.

Shared by the Git source and Git poller tests; it runs git only inside the test's tmp_path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, and an identity, as on a fresh CI machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Author")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "author@example.com")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Remote:
    """A bare repository and a work clone that commits to it and pushes."""

    def __init__(self, root: Path):
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.bare.mkdir()
        self.work.mkdir()
        git("init", "--quiet", "--bare", cwd=self.bare)
        git("symbolic-ref", "HEAD", "refs/heads/main", cwd=self.bare)
        git("init", "--quiet", cwd=self.work)
        git("symbolic-ref", "HEAD", "refs/heads/main", cwd=self.work)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str | None], message: str, branch: str = "main", force: bool = False) -> str:
        """Writes (or with None deletes) files, commits them and pushes to `branch`; returns the commit."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)
