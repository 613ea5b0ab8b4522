"""The daemon's Git poller: the applied commit's tree outlives invalid commits; a failed record is logged."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest

from reconciler.commands import watch
from reconciler.daemon import gitsource as G
from reconciler.daemon import metrics as M

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gitrepo import Remote, isolate  # noqa: E402

CLUSTER = "apiVersion: reconciler/v1\nkind: Cluster\nmetadata: {name: c1}\nspec: {}\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, and an identity, as on a fresh CI machine."""
    isolate(tmp_path, monkeypatch)


def poller(tmp_path: Path, repo: Remote) -> watch._GitPoller:
    source = G.GitSource(str(repo.bare), "main", str(tmp_path / "state"))
    ctl = types.SimpleNamespace(enqueue=lambda key: None)
    return watch._GitPoller(source, ctl, M.Metrics(), interval=60)


def test_the_applied_tree_survives_more_invalid_commits_than_trees_are_kept(tmp_path):
    repo = Remote(tmp_path)
    good = repo.commit({"cluster.yaml": CLUSTER}, "good")
    p = poller(tmp_path, repo)
    p.start_from_record()
    assert p.applied == good
    for n in range(G.KEEP_TREES + 2):
        repo.commit({"cluster.yaml": f"kind: [broken {n}\n"}, f"broken {n}")
        p.poll()
    assert p.applied == good
    assert Path(p.tree, "cluster.yaml").read_text() == CLUSTER
    assert good in p.source.trees()


def test_a_record_that_cannot_be_saved_is_logged_and_the_poller_goes_on(tmp_path, monkeypatch, caplog):
    repo = Remote(tmp_path)
    good = repo.commit({"cluster.yaml": CLUSTER}, "good")
    p = poller(tmp_path, repo)

    def full_disk(**_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(p.source, "save_record", full_disk)
    p.poll()  # must not raise: the poller thread would die with it
    assert p.applied == good
    assert any("cannot record commit" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    p.tree = None
    monkeypatch.setattr(p, "poll", lambda: (_ for _ in ()).throw(RuntimeError("unexpected")))
    p.interval = 0.01
    p.start()
    p.join(0.2)
    assert p.is_alive(), "an unexpected failure of one poll must not end the poller"
    p.stop()
    p.join(5)


def test_a_token_user_name_is_redacted_too():
    assert G.redact("https://ghp_secret@github.com/o/r.git") == "https://***@github.com/o/r.git"
    assert G.redact("https://user:pw@host/r.git") == "https://user:***@host/r.git"
    assert G.redact("ssh://git@host/r.git") == "ssh://git@host/r.git"
