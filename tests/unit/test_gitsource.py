"""GitOps pull mode against real git: a bare repository in tmp_path, pushed to from a work clone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from reconciler.daemon import gitsource as G

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gitrepo import Remote, git, isolate  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, and an identity, as on a fresh CI machine."""
    isolate(tmp_path, monkeypatch)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def state_dir(tmp_path: Path) -> str:
    return str(tmp_path / "state")


# -- fetching ----------------------------------------------------------------------------------------


def test_first_fetch_clones_into_the_state_dir(remote, state_dir):
    first = remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    assert not os.path.exists(source.clone_dir)
    assert source.fetch() == first
    assert os.path.isdir(os.path.join(source.clone_dir, ".git"))
    assert os.path.dirname(source.clone_dir) == os.path.join(state_dir, "git")
    assert os.path.basename(source.clone_dir).startswith("remote-")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=Path(source.clone_dir)) == "main"
    assert git("config", "remote.origin.fetch", cwd=Path(source.clone_dir)) == "+refs/heads/main:refs/remotes/origin/main"


def test_new_commit_is_seen_without_changing_existing_trees(remote, state_dir):
    first = remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    assert source.fetch() == first
    old_tree = source.checkout(first)
    assert source.fetch() == first  # nothing new
    second = remote.commit({"cluster.yaml": "v2\n"}, "second")
    assert source.fetch() == second
    assert Path(old_tree, "cluster.yaml").read_text() == "v1\n"


def test_force_pushed_history_is_followed(remote, state_dir):
    remote.commit({"a.yaml": "a\n"}, "a")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    git("reset", "--quiet", "--hard", "HEAD", cwd=remote.work)
    git("checkout", "--quiet", "--orphan", "rewritten", cwd=remote.work)
    rewritten = remote.commit({"a.yaml": "rewritten\n"}, "rewritten", force=True)
    assert source.fetch() == rewritten
    assert Path(source.checkout(rewritten), "a.yaml").read_text() == "rewritten\n"


@pytest.mark.parametrize("form", ["path", "file-url", "relative-path"])
def test_path_and_file_urls_both_work(remote, state_dir, form, monkeypatch):
    head = remote.commit({"cluster.yaml": "v1\n"}, "first")
    if form == "path":
        url = str(remote.bare)
    elif form == "file-url":
        url = remote.bare.as_uri()
    else:
        monkeypatch.chdir(remote.bare.parent)
        url = "remote.git"
    source = G.GitSource(url, "main", state_dir)
    assert source.fetch() == head
    assert Path(source.checkout(head), "cluster.yaml").read_text() == "v1\n"
    if form == "relative-path":
        assert source.url == str(remote.bare)


def test_bad_url_is_a_one_line_git_error_naming_url_and_branch(tmp_path, state_dir):
    missing = tmp_path / "no-such-repo.git"
    source = G.GitSource(str(missing), "main", state_dir)
    with pytest.raises(G.GitError) as err:
        source.fetch()
    message = str(err.value)
    assert message.startswith(f"cannot fetch branch main of {missing}: ")
    assert "does not exist" in message or "not a git repository" in message
    assert "\n" not in message
    assert not os.path.exists(source.clone_dir)
    assert os.listdir(os.path.join(state_dir, "git")) == [os.path.basename(source.clone_dir) + ".lock"]


def test_missing_branch_is_a_git_error_naming_the_branch(remote, state_dir):
    remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "release", state_dir)
    with pytest.raises(G.GitError) as err:
        source.fetch()
    assert str(err.value) == f"cannot fetch branch release of {remote.bare}: the repository has no branch release"


def test_branch_deleted_after_the_clone_is_a_git_error(remote, state_dir):
    remote.commit({"cluster.yaml": "v1\n"}, "first")
    remote.commit({"cluster.yaml": "v2\n"}, "second", branch="staging")
    source = G.GitSource(str(remote.bare), "staging", state_dir)
    source.fetch()
    git("push", "--quiet", "origin", "--delete", "staging", cwd=remote.work)
    with pytest.raises(G.GitError, match=r"^cannot fetch branch staging of .*: the repository has no branch staging$"):
        source.fetch()


def test_git_missing_is_a_git_error(remote, state_dir, tmp_path, monkeypatch):
    remote.commit({"cluster.yaml": "v1\n"}, "first")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(G.GitError, match=r"^cannot fetch branch main of .*: git is not installed"):
        G.GitSource(str(remote.bare), "main", state_dir).fetch()


def test_a_hanging_git_times_out_with_a_git_error(remote, state_dir, tmp_path, monkeypatch):
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    source = G.GitSource(str(remote.bare), "main", state_dir, timeout=0.5)
    with pytest.raises(G.GitError, match=r"^cannot fetch branch main of .*: git clone timed out after 0.5s$"):
        source.fetch()


# -- checking out ------------------------------------------------------------------------------------


def test_checkout_gives_each_commits_contents_in_a_tree_of_its_own(remote, state_dir):
    first = remote.commit({"cluster.yaml": "v1\n", "old.yaml": "gone later\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    second = remote.commit({"cluster.yaml": "v2\n", "old.yaml": None, "services/web.yaml": "web\n"}, "second")
    source.fetch()
    tree1 = source.checkout(first)
    tree2 = source.checkout(second)
    assert tree1 == os.path.join(state_dir, "git", source.name + ".trees", first)
    assert tree2 != tree1
    assert Path(tree1, "cluster.yaml").read_text() == "v1\n"
    assert Path(tree2, "cluster.yaml").read_text() == "v2\n"
    assert Path(tree2, "services", "web.yaml").read_text() == "web\n"
    assert not Path(tree2, "old.yaml").exists()
    assert source.trees() == [second, first]


def test_checkout_of_a_tree_again_undoes_local_edits(remote, state_dir):
    head = remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    tree = source.checkout(head)
    Path(tree, "cluster.yaml").write_text("edited\n")
    Path(tree, "stray.yaml").write_text("stray\n")
    Path(tree, "ignored-dir").mkdir()
    assert source.checkout(head[:10]) == tree
    assert Path(tree, "cluster.yaml").read_text() == "v1\n"
    assert sorted(os.listdir(tree)) == [".git", "cluster.yaml"]


def test_checkout_rebuilds_a_broken_tree(remote, state_dir):
    head = remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    tree = source.checkout(head)
    os.unlink(os.path.join(tree, ".git"))  # e.g. a crash left a directory that is no longer a worktree
    assert source.checkout(head) == tree
    assert Path(tree, "cluster.yaml").read_text() == "v1\n"
    assert os.path.isfile(os.path.join(tree, ".git"))


def test_subdir_is_where_the_manifests_are(remote, state_dir):
    first = remote.commit({"deploy/prod/cluster.yaml": "v1\n", "README": "x\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir, subdir="deploy/prod/")
    source.fetch()
    path = source.checkout(first)
    assert path == os.path.join(state_dir, "git", source.name + ".trees", first, "deploy", "prod")
    assert os.listdir(path) == ["cluster.yaml"]
    second = remote.commit({"deploy/prod/cluster.yaml": None}, "drop the subdirectory")
    source.fetch()
    assert not os.path.exists(source.checkout(second))  # validation then reports the commit as invalid


def test_older_trees_are_retired_beyond_keep_trees(remote, state_dir):
    source = G.GitSource(str(remote.bare), "main", state_dir, keep_trees=2)
    shas = []
    for n in range(4):
        shas.append(remote.commit({"cluster.yaml": f"v{n}\n"}, f"commit {n}"))
        source.fetch()
        source.checkout(shas[-1])
    assert source.trees() == [shas[3], shas[2]]
    assert sorted(os.listdir(source.trees_dir)) == sorted(shas[2:])
    listing = git("worktree", "list", "--porcelain", cwd=Path(source.clone_dir)).splitlines()
    worktrees = {line.split(" ", 1)[1] for line in listing if line.startswith("worktree ")}
    assert worktrees == {source.clone_dir, *(os.path.join(source.trees_dir, sha) for sha in shas[2:])}


def test_prune_keeps_only_the_given_trees(remote, state_dir):
    first = remote.commit({"cluster.yaml": "v1\n"}, "first")
    second = remote.commit({"cluster.yaml": "v2\n"}, "second")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    source.checkout(first)
    source.checkout(second)
    assert source.prune(keep=[second[:12]]) == [first]
    assert source.trees() == [second]
    assert source.prune(keep=[second]) == []


def test_unknown_or_malformed_commits_are_rejected(remote, state_dir):
    remote.commit({"cluster.yaml": "v1\n"}, "first")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    with pytest.raises(G.GitError, match="not cloned yet"):
        source.checkout("a" * 40)
    source.fetch()
    with pytest.raises(G.GitError, match=r"^cannot check out aaaaaaaaaaaa of .* \(branch main\): no such commit in the clone$"):
        source.checkout("a" * 40)
    for bad in ("--force", "HEAD", "main", "abc", "", "A" * 40):
        with pytest.raises(ValueError, match="expected a hexadecimal commit sha"):
            source.checkout(bad)


# -- commits and the record --------------------------------------------------------------------------


def test_commit_info(remote, state_dir, monkeypatch):
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2024-03-01T12:30:00+00:00")
    head = remote.commit({"cluster.yaml": "v1\n"}, "Scale web to 4\n\nLonger body.")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    source.fetch()
    assert source.commit_info(head[:8]) == {
        "sha": head,
        "short": git("rev-parse", "--short", head, cwd=remote.work),
        "author": "Test Author <author@example.com>",
        "date": "2024-03-01T12:30:00+00:00",
        "subject": "Scale web to 4",
    }


def test_record_survives_a_new_source_object(remote, state_dir):
    first = remote.commit({"cluster.yaml": "v1\n"}, "first")
    second = remote.commit({"cluster.yaml": "broken\n"}, "second")
    source = G.GitSource(str(remote.bare), "main", state_dir)
    assert source.load_record() is None
    source.save_record(applied=second, good=first)
    again = G.GitSource(str(remote.bare), "main", state_dir)
    assert again.record_path == os.path.join(state_dir, "git", source.name + ".json")
    assert again.load_record() == {"applied": second, "good": first}
    with open(again.record_path, encoding="utf-8") as fh:
        saved = json.load(fh)
    assert (saved["url"], saved["branch"]) == (str(remote.bare), "main")
    assert [n for n in os.listdir(os.path.join(state_dir, "git")) if n.endswith(".tmp")] == []


def test_record_without_a_good_commit_yet(state_dir):
    source = G.GitSource("/srv/repo", "main", state_dir)
    source.save_record(applied="b" * 40, good=None)
    assert source.load_record() == {"applied": "b" * 40, "good": None}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"applied": "HEAD", "good": null}', '{"good": null}'])
def test_unusable_record_reads_as_none(state_dir, content):
    source = G.GitSource("/srv/repo", "main", state_dir)
    os.makedirs(source.root)
    Path(source.record_path).write_text(content)
    assert source.load_record() is None


def test_save_record_rejects_what_is_not_a_full_sha(state_dir):
    source = G.GitSource("/srv/repo", "main", state_dir)
    with pytest.raises(ValueError, match="applied commit 'abc'"):
        source.save_record(applied="abc", good=None)
    with pytest.raises(ValueError, match="good commit 'main'"):
        source.save_record(applied="a" * 40, good="main")
    assert not os.path.exists(source.record_path)


# -- names and arguments -----------------------------------------------------------------------------


def test_sources_differing_in_url_branch_or_subdir_do_not_share_a_clone(state_dir):
    names = {
        G.GitSource(url, branch, state_dir, subdir).name
        for url, branch, subdir in [
            ("/srv/repo", "main", None),
            ("/srv/other/repo", "main", None),
            ("/srv/repo", "release", None),
            ("/srv/repo", "main", "deploy"),
            ("file:///srv/repo", "main", None),
        ]
    }
    assert len(names) == 5
    assert G.GitSource("/srv/repo", "main", state_dir, "deploy/").name == G.GitSource("/srv/repo", "main", state_dir, "deploy").name


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://user:secret@git.example.com/org/My Repo.git", "My-Repo"),
        ("git@github.com:org/infra.git", "infra"),
        ("/srv/git/deploy/", "deploy"),
        ("https://example.com/", "example.com"),
    ],
)
def test_clone_names_are_readable_and_safe(state_dir, url, name):
    source = G.GitSource(url, "main", state_dir)
    assert source.name.rsplit("-", 1)[0] == name
    assert "secret" not in repr(source)


def test_is_local():
    assert G.is_local("/srv/repo") and G.is_local("repo") and G.is_local("./a:b")
    assert not G.is_local("file:///srv/repo")
    assert not G.is_local("git@github.com:org/repo.git")
    assert not G.is_local("https://github.com/org/repo")


def test_credentials_are_redacted_from_errors(state_dir):
    source = G.GitSource("http://user:hunter2@127.0.0.1:9/repo.git", "main", state_dir, timeout=30)
    with pytest.raises(G.GitError) as err:
        source.fetch()
    assert "hunter2" not in str(err.value)
    assert str(err.value).startswith("cannot fetch branch main of http://user:***@127.0.0.1:9/repo.git: ")


@pytest.mark.parametrize(
    "url, branch, subdir, message",
    [
        ("", "main", None, "git URL"),
        ("--upload-pack=evil", "main", None, "git URL"),
        ("/srv/repo", "", None, "not a valid Git branch name"),
        ("/srv/repo", "-b", None, "not a valid Git branch name"),
        ("/srv/repo", "a..b", None, "not a valid Git branch name"),
        ("/srv/repo", "has space", None, "not a valid Git branch name"),
        ("/srv/repo", "main", "/etc", "must be a relative path"),
        ("/srv/repo", "main", "../outside", "must be a relative path"),
    ],
)
def test_bad_arguments_are_value_errors(state_dir, url, branch, subdir, message):
    with pytest.raises(ValueError, match=message):
        G.GitSource(url, branch, state_dir, subdir)


@pytest.mark.parametrize(
    "stderr, reason",
    [
        ("Cloning into 'x'...\nfatal: repository '/srv/x' does not exist\n", "repository '/srv/x' does not exist"),
        (
            "git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.\n\n"
            "Please make sure you have the correct access rights\nand the repository exists.\n",
            "git@github.com: Permission denied (publickey).",
        ),
        ("ssh: Could not resolve hostname nope: Name or service not known\nfatal: Could not read from remote repository.\n",
         "ssh: Could not resolve hostname nope: Name or service not known"),
        ("warning: redirecting\nerror: RPC failed; HTTP 500\n", "RPC failed; HTTP 500"),
        ("", "git failed without a message"),
    ],
)
def test_the_reason_is_the_line_that_says_why(stderr, reason):
    assert G._reason(stderr) == reason
