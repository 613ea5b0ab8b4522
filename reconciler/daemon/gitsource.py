"""GitOps pull mode: a branch of a Git repository, cloned into the state directory, one tree per commit.

Owns the clone at `<state_dir>/git/<name>` (a `--single-branch --no-checkout` clone of BRANCH), the
per-commit working trees at `<state_dir>/git/<name>.trees/<sha>`, and the record of the last applied
and last good commit at `<state_dir>/git/<name>.json`. `<name>` is the repository's sanitized name and
a short hash of the URL, branch and subdirectory, so two sources never share a clone or a record.

Each commit is checked out into a tree of its own (`git worktree add`, built under a temporary name and
renamed into place when complete), so a tree a reader was given never changes under it: a new commit,
even an invalid one, appears at a new path while the reconcile loop keeps reading the last good tree.
Trees are retired once more than `keep_trees` newer ones were checked out (never those a caller names in
`checkout(sha, keep=...)`: the daemon keeps the tree of the commit it applies however many invalid
commits follow), or with `prune(keep)`.

Git runs as the `git` command, never through a shell, without terminal prompts, with a timeout; every
failure is a one-line `GitError` naming the URL and branch. It must not validate manifests nor decide
which commit to apply: the daemon does both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from reconciler import filelock

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0  # seconds one git command may take (a first clone of a large repository is the slow one)
KEEP_TREES = 3  # most recently checked-out trees kept: the applied one, the candidate, one a reader may still hold

_SHA = re.compile(r"^[0-9a-f]{4,64}$")
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_BAD_BRANCH = re.compile(r"(^[-/.])|([/.]$)|(\.\.)|(//)|(@\{)|(\.lock$)|[\x00-\x20\x7f~^:?*\[\\]")
_CREDENTIALS = re.compile(r"(://[^/@:]+):[^/@]*@")
_TOKEN = re.compile(r"^((?:https?|ftps?)://)[^/@:]+@")  # https://TOKEN@host/...: a user name that is a secret
_PARTIAL = ".partial-"
# Variables that would point git at another repository than the one given with `-C`/cwd.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


class GitError(Exception):
    """A git operation failed; the message is one line naming the URL and branch."""


# -- names and URLs ----------------------------------------------------------------------------------


def is_local(url: str) -> bool:
    """True for a path on this machine (not `scheme://…` nor scp-like `host:path`)."""
    if "://" in url:
        return False
    return ":" not in url.split("/", 1)[0]


def normalize_url(url: str) -> str:
    """Local paths become absolute (they must not depend on the daemon's working directory)."""
    return os.path.abspath(os.path.expanduser(url)) if is_local(url) else url


def redact(url: str) -> str:
    """The URL with any password (and an HTTP user name alone, often a token) replaced, for messages and
    the record file."""
    return _TOKEN.sub(r"\1***@", _CREDENTIALS.sub(r"\1:***@", url))


def source_name(url: str, branch: str, subdir: str | None) -> str:
    """`<repository name>-<hash>`: readable in a directory listing, unique per (url, branch, subdir)."""
    base = re.split(r"[/:]", url.rstrip("/"))[-1]
    base = base.removesuffix(".git")
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-")[:40] or "repo"
    digest = hashlib.sha256(f"{url}\n{branch}\n{subdir or ''}".encode()).hexdigest()[:12]
    return f"{base}-{digest}"


def _check_branch(branch: str) -> str:
    if not branch or _BAD_BRANCH.search(branch):
        raise ValueError(f"branch {branch!r}: not a valid Git branch name")
    return branch


def _check_subdir(subdir: str | None) -> str | None:
    if subdir is None or subdir.strip() in ("", "."):
        return None
    norm = os.path.normpath(subdir)
    if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
        raise ValueError(f"subdirectory {subdir!r}: must be a relative path inside the repository")
    return norm


def _reason(stderr: str) -> str:
    """The line of git's error output that says what went wrong, without its `fatal:` prefix.

    Over ssh, git's "Could not read from remote repository" follows the line that says why (ssh's own
    message, or the server's "Permission denied (publickey)"): that line is the reason then.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Cloning into")]
    at = next((i for i, line in enumerate(lines) if line.startswith(("fatal:", "error:"))), 0)
    if lines and "Could not read from remote repository" in lines[at] and at > 0:
        at -= 1
    line = lines[at] if lines else "git failed without a message"
    line = re.sub(r"^(fatal|error):\s*", "", line)
    return redact(" ".join(line.split()))


class GitSource:
    """One branch of one repository, fetched into `<state_dir>/git/`.

    Not meant for concurrent use of one clone by several processes, but safe if it happens: every
    operation that changes the clone holds an exclusive lock on `<state_dir>/git/<name>.lock`.
    """

    def __init__(
        self,
        url: str,
        branch: str,
        state_dir: str,
        subdir: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        keep_trees: int = KEEP_TREES,
    ):
        if not url or url.startswith("-"):
            raise ValueError(f"git URL {url!r}: expected a URL or a path to a repository")
        self.url = normalize_url(url)
        self.branch = _check_branch(branch)
        self.subdir = _check_subdir(subdir)
        self.timeout = timeout
        self.keep_trees = max(1, keep_trees)
        self.name = source_name(self.url, self.branch, self.subdir)
        self.root = os.path.join(state_dir, "git")
        self.clone_dir = os.path.join(self.root, self.name)
        self.trees_dir = os.path.join(self.root, self.name + ".trees")
        self.record_path = os.path.join(self.root, self.name + ".json")
        self._lock_path = os.path.join(self.root, self.name + ".lock")

    def __repr__(self) -> str:
        return f"GitSource({redact(self.url)!r}, branch={self.branch!r}, subdir={self.subdir!r})"

    # -- fetching ------------------------------------------------------------------------------------

    def fetch(self) -> str:
        """Clones on first use, else fetches BRANCH; returns the remote head commit (the trees stay as they are)."""
        what = f"cannot fetch branch {self.branch} of {redact(self.url)}"
        with self._locked(what):
            if not self._cloned():
                self._clone(what)
            else:
                refspec = f"+refs/heads/{self.branch}:{self._remote_ref()}"
                self._git(["fetch", "--quiet", "--no-tags", "origin", refspec], what, cwd=self.clone_dir)
            return self._resolve(f"{self._remote_ref()}^{{commit}}", what, missing=f"no branch {self.branch} after fetching")

    def _remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _cloned(self) -> bool:
        return os.path.isdir(os.path.join(self.clone_dir, ".git"))

    def _clone(self, what: str) -> None:
        """Clones into a temporary directory renamed into place, so a clone is either whole or absent."""
        os.makedirs(self.root, exist_ok=True)
        partial = f"{self.clone_dir}{_PARTIAL}{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(self.clone_dir, ignore_errors=True)  # a directory without .git is not a clone of ours
        args = ["clone", "--quiet", "--no-checkout", "--single-branch", "--no-tags", "--branch", self.branch]
        try:
            self._git([*args, "--", self.url, partial], what, cwd=self.root)
            os.replace(partial, self.clone_dir)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    # -- checking out --------------------------------------------------------------------------------

    def checkout(self, sha: str, keep: Iterable[str] = ()) -> str:
        """A clean tree of commit `sha`; returns the manifests' path in it (the tree, or `subdir` in it).

        The tree is `<state_dir>/git/<name>.trees/<full sha>`. An existing tree of that commit is reset
        and cleaned (undoing any local edit); a new one is built under a temporary name and renamed into
        place. A commit without `subdir` still gets its tree: the returned path then does not exist, and
        validating it reports the commit as invalid. Older trees beyond `keep_trees` are removed, except
        those of `keep` (full or abbreviated shas: the trees a caller still reads, such as the applied one).
        """
        sha = _check_sha(sha)
        keep = [_check_sha(s) for s in keep]
        what = f"cannot check out {sha[:12]} of {redact(self.url)} (branch {self.branch})"
        with self._locked(what):
            if not self._cloned():
                raise GitError(f"{what}: not cloned yet (fetch first)")
            full = self._resolve(f"{sha}^{{commit}}", what, missing="no such commit in the clone")
            tree = os.path.join(self.trees_dir, full)
            if self._is_tree_of(tree, full):
                self._git(["reset", "--quiet", "--hard", full], what, cwd=tree)
                self._git(["clean", "-ffdxq"], what, cwd=tree)
            else:
                self._build_tree(tree, full, what)
            os.utime(tree)  # the tree's mtime orders trees for retirement
            self._retire(keep=[full, *keep])
        return os.path.join(tree, self.subdir) if self.subdir else tree

    def _is_tree_of(self, tree: str, full: str) -> bool:
        if not os.path.isfile(os.path.join(tree, ".git")):
            return False
        try:
            return self._git(["rev-parse", "HEAD"], "", cwd=tree).strip() == full
        except GitError:
            return False

    def _build_tree(self, tree: str, full: str, what: str) -> None:
        os.makedirs(self.trees_dir, exist_ok=True)
        partial = os.path.join(self.trees_dir, f"{_PARTIAL}{full}")
        for path in (tree, partial):
            shutil.rmtree(path, ignore_errors=True)
        self._git(["worktree", "prune"], what, cwd=self.clone_dir)
        try:
            self._git(["worktree", "add", "--quiet", "--detach", "--force", partial, full], what, cwd=self.clone_dir)
            self._git(["worktree", "move", partial, tree], what, cwd=self.clone_dir)
        except GitError:
            shutil.rmtree(partial, ignore_errors=True)
            self._git(["worktree", "prune"], what, cwd=self.clone_dir)
            raise

    def trees(self) -> list[str]:
        """Full shas of the commits that have a tree, most recently checked out first."""
        try:
            names = [n for n in os.listdir(self.trees_dir) if _FULL_SHA.match(n)]
        except FileNotFoundError:
            return []
        mtimes = {}
        for n in names:
            with contextlib.suppress(OSError):
                mtimes[n] = os.stat(os.path.join(self.trees_dir, n)).st_mtime
        return sorted(mtimes, key=lambda n: mtimes[n], reverse=True)

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Removes every tree except those of `keep` (full or abbreviated shas); returns the removed shas.

        For a caller that knows which trees are still read, e.g. after it switched to a new commit.
        """
        keep = [_check_sha(s) for s in keep]
        with self._locked(f"cannot prune the trees of {redact(self.url)} (branch {self.branch})"):
            doomed = [t for t in self.trees() if not any(t.startswith(k) for k in keep)]
            self._remove_trees(doomed)
        return doomed

    def _retire(self, keep: Sequence[str]) -> None:
        trees = self.trees()
        doomed = [t for t in trees[self.keep_trees :] if not any(t.startswith(k) for k in keep)]
        self._remove_trees(doomed)

    def _remove_trees(self, shas: Sequence[str]) -> None:
        leftovers = []
        with contextlib.suppress(FileNotFoundError):
            leftovers = [n for n in os.listdir(self.trees_dir) if n.startswith(_PARTIAL)]
        for name in [*shas, *leftovers]:
            shutil.rmtree(os.path.join(self.trees_dir, name), ignore_errors=True)
        if (shas or leftovers) and self._cloned():
            with contextlib.suppress(GitError):  # stale worktree entries are harmless; next prune gets them
                self._git(["worktree", "prune"], "", cwd=self.clone_dir)

    # -- commits -------------------------------------------------------------------------------------

    def commit_info(self, sha: str) -> dict[str, str]:
        """sha, short, author ("name <email>"), date (author date, ISO 8601) and subject of a commit."""
        sha = _check_sha(sha)
        what = f"cannot read commit {sha[:12]} of {redact(self.url)} (branch {self.branch})"
        if not self._cloned():
            raise GitError(f"{what}: not cloned yet (fetch first)")
        full = self._resolve(f"{sha}^{{commit}}", what, missing="no such commit in the clone")
        out = self._git(["show", "--no-patch", "--format=%H%x00%h%x00%an <%ae>%x00%aI%x00%s", full], what, cwd=self.clone_dir)
        fields = out.rstrip("\n").split("\x00")
        if len(fields) != 5:
            raise GitError(f"{what}: unexpected output of git show")
        return dict(zip(("sha", "short", "author", "date", "subject"), fields, strict=True))

    def _resolve(self, rev: str, what: str, missing: str | None = None) -> str:
        try:
            return self._git(["rev-parse", "--verify", "--quiet", rev], what, cwd=self.clone_dir).strip()
        except GitError:
            raise GitError(f"{what}: {missing or f'no {rev} in the clone'}") from None

    # -- the record ----------------------------------------------------------------------------------

    def load_record(self) -> dict[str, str | None] | None:
        """{"applied": sha, "good": sha or None} as last saved, or None when there is no usable record.

        `applied` is the last commit the daemon acted on (valid or not, so a restart does not announce
        it again); `good` the last one whose manifests were valid and applied (where a restart resumes).
        """
        try:
            with open(self.record_path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable Git record %s: %s", self.record_path, e)
            return None
        applied = raw.get("applied") if isinstance(raw, dict) else None
        good = raw.get("good") if isinstance(raw, dict) else None
        if not (isinstance(applied, str) and _FULL_SHA.match(applied)) or not (
            good is None or (isinstance(good, str) and _FULL_SHA.match(good))
        ):
            log.warning("ignoring malformed Git record %s", self.record_path)
            return None
        return {"applied": applied, "good": good}

    def save_record(self, applied: str, good: str | None) -> None:
        """Records the applied and the last good commit (full shas), atomically (temp file + rename)."""
        for what, sha in (("applied", applied), ("good", good)):
            if sha is not None and not (isinstance(sha, str) and _FULL_SHA.match(sha)):
                raise ValueError(f"{what} commit {sha!r}: expected a full commit sha")
        if applied is None:
            raise ValueError("applied commit: expected a full commit sha, got None")
        entry = {
            "url": redact(self.url),
            "branch": self.branch,
            "subdir": self.subdir,
            "applied": applied,
            "good": good,
            "savedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.makedirs(self.root, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{self.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.record_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- running git ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        """Holds `<name>.lock` exclusively, waiting up to the git timeout for another holder."""
        os.makedirs(self.root, exist_ok=True)
        try:
            with filelock.exclusive(self._lock_path, self.timeout):
                yield
        except TimeoutError:
            raise GitError(f"{what}: {self._lock_path} stayed locked for {self.timeout:g}s") from None

    def _git(self, args: Sequence[str], what: str, cwd: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="")
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # no password or host-key prompts either
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as e:
            if e.filename == "git":
                raise GitError(f"{what}: git is not installed (no git command on PATH)") from None
            raise GitError(f"{what}: {e.filename or cwd}: no such file or directory") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"{what}: git {args[0]} timed out after {self.timeout:g}s") from None
        except OSError as e:
            raise GitError(f"{what}: cannot run git: {e.strerror or e}") from None
        if proc.returncode != 0:
            raise GitError(f"{what}: {self._explain(proc.stderr)}")
        return proc.stdout

    def _explain(self, stderr: str) -> str:
        reason = _reason(stderr)
        if re.search(r"Remote branch .* not found|couldn't find remote ref", reason):
            return f"the repository has no branch {self.branch}"
        return reason


def _check_sha(sha: Any) -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise ValueError(f"commit {sha!r}: expected a hexadecimal commit sha")
    return sha
