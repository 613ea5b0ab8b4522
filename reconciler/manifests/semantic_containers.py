"""Semantic rules about how the containers of one TaskDefinition fit together (ECS reference §1.7, §2).

Owns network-mode rules (hostPort under awsvpc/host, no ports under none, hostname/extraHosts/links),
health checks, dependsOn (targets, conditions, cycles), references inside the task (mountPoints to
volumes, volumesFrom, links, proxyConfiguration, inference accelerators, unique volume names), port
conflicts, awslogs options, and dockerLabels keys reserved for the reconciler's own labels
(`labels.PREFIX`, which would forge ownership). Task-level size, Fargate and placement rules are in
semantic_taskdef.py, which also provides the accessors used here.

It must not do I/O, must not raise on odd values, and must not look at other documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from reconciler import labels
from reconciler.manifests import document
from reconciler.manifests import semantic_taskdef as td

Diagnostics = Iterator[document.Diagnostic]

HEALTH_CHECK_FORMS = ("CMD", "CMD-SHELL", "NONE")


def rule_network_mode(doc: document.Document) -> Diagnostics:
    """hostPort under awsvpc/host, no ports under none, no hostname/extraHosts under awsvpc, links only in bridge."""
    mode = td.network_mode(doc)
    same_port = mode in ("awsvpc", "host") or td.is_fargate(doc)
    where = f"in networkMode {mode}" if mode in ("awsvpc", "host") else "on FARGATE"
    for i, c in td.containers(doc):
        who = f"container {td.label(c, i)}"
        mappings = td.items(c.get("portMappings"))
        if mode == "none" and mappings:
            yield doc.diagnostic(
                td.at_container(i, "portMappings"), f"{who} maps ports, but networkMode none has no network"
            )
        if same_port:
            for k, pm in enumerate(mappings):
                pm = td.mapping(pm)
                host, port = td.integer(pm.get("hostPort")), td.integer(pm.get("containerPort"))
                if host is not None and port is not None and host != port:
                    yield doc.diagnostic(
                        td.at_container(i, "portMappings", k, "hostPort"),
                        f"{who} hostPort {host} must be omitted or equal containerPort {port} {where}",
                    )
        if mode == "awsvpc":
            for field in ("hostname", "extraHosts"):
                if c.get(field) is not None:
                    yield doc.diagnostic(
                        td.at_container(i, field),
                        f"{who} sets {field}, which networkMode awsvpc does not allow",
                    )
        if mode != "bridge" and td.items(c.get("links")):
            yield doc.diagnostic(
                td.at_container(i, "links"),
                f"{who} sets links, which work only in networkMode bridge (not {mode})",
            )


def rule_health_checks(doc: document.Document) -> Diagnostics:
    """The command form: CMD or CMD-SHELL plus something to run, or NONE (ranges are the schema's)."""
    for i, c in td.containers(doc):
        hc = c.get("healthCheck")
        if not isinstance(hc, Mapping):
            continue
        who = f"container {td.label(c, i)}"
        command = hc.get("command")
        if not isinstance(command, list) or not command:
            yield doc.diagnostic(
                td.at_container(i, "healthCheck", "command"),
                f"{who} healthCheck needs a command such as [CMD-SHELL, 'curl -f localhost']",
            )
        elif command[0] not in HEALTH_CHECK_FORMS:
            yield doc.diagnostic(
                td.at_container(i, "healthCheck", "command", 0),
                f"{who} healthCheck command must start with CMD, CMD-SHELL or NONE, not {command[0]!r}",
            )
        elif command[0] != "NONE" and len(command) < 2:
            yield doc.diagnostic(
                td.at_container(i, "healthCheck", "command"),
                f"{who} healthCheck command {command[0]} names nothing to run",
            )


def rule_depends_on(doc: document.Document) -> Diagnostics:
    """Targets exist and are not the container itself, conditions fit the target, and there are no cycles."""
    by_name = td.container_names(doc)
    listed = dict(td.containers(doc))
    edges: dict[int, list[tuple[int, int]]] = {}
    for i, c in td.containers(doc):
        who = f"container {td.label(c, i)}"
        for k, dep in enumerate(td.items(c.get("dependsOn"))):
            dep = td.mapping(dep)
            target = td.string(dep.get("containerName"))
            if target is None:
                continue
            if target == c.get("name"):
                yield doc.diagnostic(
                    td.at_container(i, "dependsOn", k, "containerName"), f"{who} depends on itself"
                )
                continue
            if target not in by_name:
                yield doc.diagnostic(
                    td.at_container(i, "dependsOn", k, "containerName"),
                    f"{who} depends on {target!r}, which is not a container of this task",
                )
                continue
            t = by_name[target]
            edges.setdefault(i, []).append((t, k))
            condition = dep.get("condition")
            if condition == "HEALTHY" and not td.has_health_check(listed[t]):
                yield doc.diagnostic(
                    td.at_container(i, "dependsOn", k, "condition"),
                    f"{who} waits for {target!r} to be HEALTHY, but {target!r} has no healthCheck",
                )
            if condition in ("COMPLETE", "SUCCESS") and td.is_essential(listed[t]):
                yield doc.diagnostic(
                    td.at_container(i, "dependsOn", k, "condition"),
                    f"{who} waits for {target!r} to {condition}, but {target!r} is essential, so its exit stops the task",
                )
    for cycle in _cycles(edges):
        names = [td.string(listed[n].get("name")) or f"#{n}" for n in cycle]
        k = next(k for t, k in edges[cycle[0]] if t == cycle[1 % len(cycle)])
        yield doc.diagnostic(
            td.at_container(cycle[0], "dependsOn", k),
            "dependsOn forms a cycle: " + " → ".join([*names, names[0]]),
        )


def _cycles(edges: dict[int, list[tuple[int, int]]]) -> list[list[int]]:
    """One cycle per back edge found by depth-first search, each rotated to start at its lowest node, deduplicated."""
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    found: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for root in sorted(edges):
        if root in state:
            continue
        path: list[int] = [root]
        todo: list[Iterator[tuple[int, int]]] = [iter(edges.get(root, []))]
        state[root] = 1
        while todo:
            step = next(todo[-1], None)
            if step is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            target = step[0]
            if state.get(target) == 1:
                cycle = path[path.index(target) :]
                low = cycle.index(min(cycle))
                cycle = cycle[low:] + cycle[:low]
                if tuple(cycle) not in seen:
                    seen.add(tuple(cycle))
                    found.append(cycle)
            elif target not in state:
                state[target] = 1
                path.append(target)
                todo.append(iter(edges.get(target, [])))
    return found


def rule_references(doc: document.Document) -> Diagnostics:
    """Volume names are unique; mountPoints, volumesFrom, links, proxyConfiguration and accelerators resolve."""
    volumes: dict[str, int] = {}
    for j, v in enumerate(td.items(doc.spec.get("volumes"))):
        name = td.string(td.mapping(v).get("name"))
        if name is None:
            continue
        if name in volumes:
            yield doc.diagnostic(
                ("spec", "volumes", j, "name"),
                f"volume name {name!r} is already used by volumes[{volumes[name]}]",
            )
        else:
            volumes[name] = j
    names = td.container_names(doc)
    accelerators = {
        td.string(td.mapping(a).get("deviceName")) for a in td.items(doc.spec.get("inferenceAccelerators"))
    }
    for i, c in td.containers(doc):
        who = f"container {td.label(c, i)}"
        for k, mp in enumerate(td.items(c.get("mountPoints"))):
            source = td.string(td.mapping(mp).get("sourceVolume"))
            if source is not None and source not in volumes:
                yield doc.diagnostic(
                    td.at_container(i, "mountPoints", k, "sourceVolume"),
                    f"{who} mounts volume {source!r}, which the task does not declare",
                )
        for k, vf in enumerate(td.items(c.get("volumesFrom"))):
            source = td.string(td.mapping(vf).get("sourceContainer"))
            if source is None:
                continue
            if source == c.get("name"):
                yield doc.diagnostic(
                    td.at_container(i, "volumesFrom", k, "sourceContainer"),
                    f"{who} takes volumes from itself",
                )
            elif source not in names:
                yield doc.diagnostic(
                    td.at_container(i, "volumesFrom", k, "sourceContainer"),
                    f"{who} takes volumes from {source!r}, which is not a container of this task",
                )
        for k, link in enumerate(td.items(c.get("links"))):
            target = link.split(":", 1)[0] if isinstance(link, str) else None
            if target is not None and (target not in names or target == c.get("name")):
                yield doc.diagnostic(
                    td.at_container(i, "links", k),
                    f"{who} links to {target!r}, which is not another container of this task",
                )
        for k, req in enumerate(td.items(c.get("resourceRequirements"))):
            req = td.mapping(req)
            if req.get("type") == "InferenceAccelerator" and req.get("value") not in accelerators:
                yield doc.diagnostic(
                    td.at_container(i, "resourceRequirements", k, "value"),
                    f"{who} requires inference accelerator {req.get('value')!r}, which inferenceAccelerators does not declare",
                )
    proxy = td.string(td.mapping(doc.spec.get("proxyConfiguration")).get("containerName"))
    if proxy is not None and proxy not in names:
        yield doc.diagnostic(
            ("spec", "proxyConfiguration", "containerName"),
            f"proxy container {proxy!r} is not a container of this task",
        )


def rule_ports(doc: document.Document) -> Diagnostics:
    """No fixed host port twice per protocol in a task (awsvpc/host: containerPort is the host port);
    no container port twice per protocol in a container."""
    same_port = td.network_mode(doc) in ("awsvpc", "host") or td.is_fargate(doc)
    hosts: dict[tuple[int, str], tuple[str, int]] = {}
    for i, c in td.containers(doc):
        who = f"container {td.label(c, i)}"
        own: dict[tuple[int, str], int] = {}
        for k, pm in enumerate(td.items(c.get("portMappings"))):
            pm = td.mapping(pm)
            port, host = td.integer(pm.get("containerPort")), td.integer(pm.get("hostPort"))
            protocol = td.string(pm.get("protocol")) or "tcp"
            if port is not None:
                if (port, protocol) in own:
                    yield doc.diagnostic(
                        td.at_container(i, "portMappings", k, "containerPort"),
                        f"{who} exposes container port {port}/{protocol} twice (also portMappings[{own[port, protocol]}])",
                    )
                    continue
                own[port, protocol] = k
            if same_port and host is None:
                host, field = port, "containerPort"
            else:
                field = "hostPort"
            if not host:
                continue
            if (host, protocol) in hosts:
                other, other_k = hosts[host, protocol]
                yield doc.diagnostic(
                    td.at_container(i, "portMappings", k, field),
                    f"{who} host port {host}/{protocol} is already taken by container {other} (portMappings[{other_k}])",
                )
            else:
                hosts[host, protocol] = (td.label(c, i), k)


def rule_log_configuration(doc: document.Document) -> Diagnostics:
    """awslogs needs awslogs-group and awslogs-region, and awslogs-stream-prefix on FARGATE (§1.7 item 12).

    Warnings, not errors: ECS would reject the definition, but a plain Docker host runs it (the build
    stage swaps log drivers it cannot honour for json-file), so the manifest still works here.
    """
    required = ["awslogs-group", "awslogs-region"] + (["awslogs-stream-prefix"] if td.is_fargate(doc) else [])
    for i, c in td.containers(doc):
        log = td.mapping(c.get("logConfiguration"))
        if log.get("logDriver") != "awslogs":
            continue
        options = td.mapping(log.get("options"))
        for option in required:
            if not options.get(option):
                yield doc.diagnostic(
                    td.at_container(i, "logConfiguration", "options", option),
                    f"container {td.label(c, i)} uses the awslogs driver without the option {option}"
                    + (" (required on FARGATE)" if option == "awslogs-stream-prefix" else ""),
                    document.WARNING,
                )


def rule_docker_labels(doc: document.Document) -> Diagnostics:
    """No dockerLabels key under the reconciler's own prefix: those labels say who owns a container."""
    for i, c in td.containers(doc):
        for key in td.mapping(c.get("dockerLabels")):
            if str(key).startswith(labels.PREFIX):
                yield doc.diagnostic(
                    td.at_container(i, "dockerLabels", str(key)),
                    f"container {td.label(c, i)}: dockerLabels key {key!r} is reserved: keys starting with "
                    f"{labels.PREFIX!r} are the reconciler's own ownership labels",
                )


RULES: tuple[Callable[[document.Document], Diagnostics], ...] = (
    rule_network_mode,
    rule_health_checks,
    rule_depends_on,
    rule_references,
    rule_ports,
    rule_log_configuration,
    rule_docker_labels,
)
