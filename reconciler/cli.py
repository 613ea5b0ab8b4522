"""The command line: an argparse tree that dispatches to `commands/` and maps errors to exit statuses.

Owns parsing flags, building the `Environment`, and turning `UserError`, engine errors and Ctrl-C into
one line and a non-zero status (never a traceback). Commands know nothing of argparse.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.engine import api
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def _paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="manifest files or directories (default: manifests/)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="state directory (default: $RECONCILER_STATE_DIR, else $XDG_STATE_HOME/reconciler)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconciler", description="ECS-style container orchestration for plain Docker hosts.")
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("validate", help="check manifests against the schemas and semantic rules")
    _paths(p)
    p.add_argument("--json", action="store_true", help="print the errors as a JSON list")

    p = sub.add_parser("plan", help="show what apply would change")
    _paths(p)
    _common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 0 without changes, 2 with changes, 1 on error")
    p.add_argument("--target", action="append", metavar="service/NAME", help="plan only this service (repeatable)")
    p.add_argument("--prune", action="store_true", help="include removing services no longer declared")
    p.add_argument("--unreachable-grace", metavar="DURATION", help="count tasks of an unanswering engine this long (default 60s)")

    p = sub.add_parser("apply", help="converge the clusters to the manifests")
    _paths(p)
    _common(p)
    p.add_argument("--prune", action="store_true", help="remove services and tasks the manifests no longer declare")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--target", action="append", metavar="service/NAME", help="apply only this service (repeatable)")
    p.add_argument("--concurrency", type=int, default=8, help="actions at once per engine (default 8)")
    p.add_argument("--lock-wait", metavar="DURATION", help="wait this long for another writer's lock (e.g. 30s)")
    p.add_argument("--unreachable-grace", metavar="DURATION", help="count tasks of an unanswering engine this long (default 60s)")
    p.add_argument("--no-wait", action="store_true",
                   help="return once this pass's actions are done, without waiting for health or later waves")
    p.add_argument("--timeout", metavar="DURATION", help="give the rollouts this long at most (default 30m)")

    p = sub.add_parser("destroy", help="remove every managed task in the clusters of PATH (or of --target services)")
    _paths(p)
    _common(p)
    p.add_argument("--yes", "-y", action="store_true")
    p.add_argument("--target", action="append", metavar="service/NAME", help="remove only this service's tasks (repeatable)")
    p.add_argument("--concurrency", type=int, default=8, help="creates at once per engine (stops run wider: all at once, up to 64)")
    p.add_argument("--lock-wait", metavar="DURATION")

    p = sub.add_parser("get", help="list services, tasks, instances, task-definitions [FAMILY], deployments SERVICE, alarms")
    p.add_argument("what", choices=["services", "tasks", "instances", "task-definitions", "deployments", "alarms"])
    _paths(p)
    _common(p)
    p.add_argument("--cluster")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("describe", help="a service, task or task definition in ECS's describe shape (JSON)")
    p.add_argument("what", choices=["service", "task", "task-definition"])
    p.add_argument("name", metavar="NAME|ID|FAMILY[:N]")
    _paths(p)
    _common(p)

    p = sub.add_parser("events", help="service events in ECS's words, oldest first (all services, or SERVICE)")
    _paths(p)
    _common(p)
    p.add_argument("--service", metavar="SERVICE", help="only this service's events (also: events SERVICE [PATH...])")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until interrupted")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("logs", help="a service's or task's container logs")
    p.add_argument("target", metavar="SERVICE|TASK")
    _paths(p)
    _common(p)
    p.add_argument("--container")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--tail", type=int)

    p = sub.add_parser("run-task", help="run one-off tasks of a task definition (never restarted)")
    p.add_argument("family", metavar="FAMILY[:REV]")
    _paths(p)
    _common(p)
    p.add_argument("--cluster")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--wait", action="store_true", help="wait and exit with the essential container's exit code")
    p.add_argument("--launch-type", choices=["EC2", "FARGATE"], default="EC2")

    p = sub.add_parser("stop-task", help="stop a task by id")
    p.add_argument("task_id", metavar="ID")
    _paths(p)
    _common(p)
    p.add_argument("--reason", default="Task stopped by user")

    p = sub.add_parser("watch", help="the daemon: keep the clusters converged (files, Git, engine events)")
    _paths(p)
    _common(p)
    p.add_argument("--git", metavar="URL|PATH", help="follow this Git repository instead of a local tree")
    p.add_argument("--branch", default="main", help="branch to follow with --git (default main)")
    p.add_argument("--subdir", help="manifest directory inside the repository (default: its root)")
    p.add_argument("--interval", default="60s", metavar="DURATION", help="how often to fetch with --git (default 60s)")
    p.add_argument("--prune", action="store_true", help="remove services whose manifests disappear")
    p.add_argument("--listen", default="127.0.0.1:9400", metavar="HOST:PORT", help="status listener, or 'off'")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--resync", default="60s", metavar="DURATION", help="periodic full resync (default 60s, jittered)")
    p.add_argument("--concurrency", type=int, default=8, help="actions at once per engine (default 8)")
    p.add_argument("--workers", type=int, default=4, help="services reconciled at once (default 4)")
    p.add_argument("--lock-wait", metavar="DURATION", help="wait this long for the clusters' writer locks")
    p.add_argument("--unreachable-grace", default="60s", metavar="DURATION")
    p.add_argument("--scaling-period", default="15s", metavar="DURATION", help="auto scaling evaluation period (default 15s)")

    p = sub.add_parser("unlock", help="show who holds a cluster's writer lock and break it")
    p.add_argument("cluster", metavar="CLUSTER")
    _paths(p)
    _common(p)
    p.add_argument("--force", action="store_true", help="break the lock even while its holder runs on this host")

    p = sub.add_parser("exec", help="run a command in a task's container")
    p.add_argument("task_id", metavar="TASK")
    p.add_argument("-m", "--manifests", action="append", default=[], metavar="PATH", help="manifest paths (default: manifests/)")
    _common(p)
    p.add_argument("--container")
    p.add_argument("-i", "--interactive", action="store_true", help="a terminal in the container (needs one here)")
    # Not `command`, which holds the subcommand; and not REMAINDER, which would swallow `--container` after
    # TASK: the words after `--` are split off before parsing (see `_split_exec`).
    p.add_argument("exec_command", nargs="*", metavar="-- COMMAND")
    return parser


def _split_exec(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`exec TASK [--container C] -- COMMAND...`: everything after the first `--` is the command, never options."""
    if argv[:1] == ["exec"] and "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, None


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parses argv; manifest paths may also follow options (`get tasks --json manifests/`), which plain
    argparse refuses once an earlier positional (`tasks`) has been matched."""
    parser = build_parser()
    head, command = _split_exec(argv)
    args, extra = parser.parse_known_args(head)
    if extra:
        unknown = [a for a in extra if a.startswith("-")] if isinstance(getattr(args, "paths", None), list) else extra
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.paths.extend(extra)
    if command is not None:
        args.exec_command = list(args.exec_command) + command
    return args


def run(argv: Sequence[str], env: Environment | None = None) -> int:
    env = env or Environment()
    try:
        args = _parse(list(argv))
        if getattr(args, "state_dir", None):
            env.state_dir = args.state_dir
        return int(dispatch(args, env))
    except UserError as e:
        env.err(f"error: {e.message}")
        return int(e.status)
    except api.EngineError as e:
        env.err(f"error: engine {e.endpoint}: {e.message}")
        return int(ExitStatus.ERROR)
    except KeyboardInterrupt:
        env.err("interrupted; run the command again to finish converging")
        return 130
    except BrokenPipeError:
        return int(ExitStatus.ERROR)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if env.environ.get("RECONCILER_DEBUG"):
            raise
        env.err(f"error: internal error: {type(e).__name__}: {e} (a bug; RECONCILER_DEBUG=1 shows the traceback)")
        return int(ExitStatus.ERROR)


def _leading_name(paths: list[str]) -> tuple[str | None, list[str]]:
    """An optional NAME before the manifest paths: the first word, unless it names a file or directory."""
    if paths and not os.path.exists(paths[0]):
        return paths[0], paths[1:]
    return None, paths


def dispatch(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.commands import converge, inspect, tasks, validate

    c = args.command
    if c == "validate":
        return validate.validate(env, args.paths, args.json)
    if c == "plan":
        return converge.plan(env, args.paths, args.json, args.detailed_exitcode, args.target, args.prune, args.unreachable_grace)
    if c == "apply":
        return converge.apply(
            env, args.paths, args.prune, args.yes, args.target, args.concurrency, args.lock_wait, args.unreachable_grace,
            args.no_wait, args.timeout,
        )
    if c == "destroy":
        return converge.destroy(env, args.paths, args.yes, args.concurrency, args.lock_wait, args.target)
    if c == "get":
        from reconciler.commands import history

        if args.what == "deployments":
            if not args.paths:
                raise UserError("get deployments: expected SERVICE (get deployments SERVICE [PATH...])")
            return history.get_deployments(env, args.paths[0], args.paths[1:], args.json)
        if args.what == "alarms":
            return history.get_alarms(env, args.paths, args.json)
        if args.what == "task-definitions":
            family, paths = _leading_name(args.paths)
            return history.get_task_definitions(env, paths, family, args.json)
        return inspect.get(env, args.what, args.paths, args.cluster, args.json)
    if c == "describe":
        if args.what == "task-definition":
            from reconciler.commands import history

            return history.describe_task_definition(env, args.name, args.paths)
        return inspect.describe(env, args.what, args.name, args.paths)
    if c == "events":
        from reconciler.commands import history

        service, paths = (args.service, args.paths) if args.service else _leading_name(args.paths)
        return history.events(env, service, paths, args.follow, args.json)
    if c == "logs":
        return inspect.logs(env, args.target, args.paths, args.container, args.follow, args.tail)
    if c == "run-task":
        return tasks.run_task(env, args.family, args.paths, args.cluster, args.count, args.wait, args.launch_type)
    if c == "stop-task":
        return tasks.stop_task(env, args.task_id, args.paths, args.reason)
    if c == "watch":
        from reconciler.commands import watch

        return watch.watch(
            env,
            watch.WatchOptions(
                paths=args.paths, git=args.git, branch=args.branch, subdir=args.subdir, interval=args.interval,
                prune=args.prune, listen=args.listen, log_format=args.log_format, resync=args.resync,
                concurrency=args.concurrency, workers=args.workers, lock_wait=args.lock_wait,
                unreachable_grace=args.unreachable_grace, scaling_period=args.scaling_period,
            ),
        )
    if c == "unlock":
        from reconciler.commands import lock

        return lock.unlock(env, args.cluster, args.paths, args.force)
    if c == "exec":
        return tasks.exec_(env, args.task_id, args.manifests, args.container, args.exec_command, args.interactive)
    raise UserError(f"unknown command {c}")


def main() -> None:
    sys.exit(run(sys.argv[1:]))
