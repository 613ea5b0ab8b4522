"""Values a container needs at creation that live outside the manifests: environment files, secrets,
registry credentials.

Owns reading local `.env` files, `secrets[].valueFrom` of the forms `file:PATH`, `/abs/path` and
`env:NAME`, and the cluster's registry credentials file. Relative paths (environment files, `file:`
secrets) are resolved against the directory of the manifest that names them, given by the caller, never
against the working directory. Every failure is a `ResolveError` naming the file and the reason (never
its content). Resolved values go only into the container request; they must never be logged, labelled
or put in a plan (callers get names, not values, in errors).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


class ResolveError(Exception):
    pass


def _path(value: str, base_dir: str | None) -> str:
    """`value` as written, resolved against `base_dir` when relative."""
    return os.path.normpath(os.path.join(base_dir, value)) if base_dir else value


def _read_env_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("export "):
                    line = line[len("export ") :]
                name, sep, value = line.partition("=")
                if not sep or not name.strip():
                    raise ResolveError(f"{path}:{number}: expected NAME=VALUE")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                out[name.strip()] = value
    except OSError as e:
        raise ResolveError(f"cannot read environment file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ResolveError(f"environment file {path} is not UTF-8 text") from None
    return out


def _secret(name: str, source: str, environ: Mapping[str, str], base_dir: str | None) -> str | None:
    if source.startswith("env:"):
        key = source[4:]
        if key not in environ:
            raise ResolveError(f"secret {name}: environment variable {key} is not set")
        return environ[key]
    if source.startswith("file:"):
        path = _path(source[5:], base_dir)
    elif source.startswith("/"):
        path = source
    else:
        return None  # an AWS reference: reported as a plan warning, not set
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\n")
    except OSError as e:
        raise ResolveError(f"secret {name}: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ResolveError(f"secret {name}: {path} is not UTF-8 text") from None


def environment(
    container: Mapping[str, Any], environ: Mapping[str, str] | None = None, base_dir: str | None = None
) -> dict[str, str]:
    """The container's environment: files top-down, then `environment`, then `secrets`. Relative file
    paths are resolved against `base_dir`, the directory of the manifest (None: as written)."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for f in container.get("environmentFiles") or []:
        value = str(f.get("value", ""))
        if not value.startswith("arn:"):
            out.update(_read_env_file(_path(value, base_dir)))
    for kv in container.get("environment") or []:
        out[str(kv.get("name"))] = "" if kv.get("value") is None else str(kv.get("value"))
    for s in container.get("secrets") or []:
        value = _secret(str(s.get("name")), str(s.get("valueFrom", "")), environ, base_dir)
        if value is not None:
            out[str(s.get("name"))] = value
    return out


def registry_auth(container: Mapping[str, Any], credentials_file: str | None) -> dict[str, str] | None:
    """Credentials for `repositoryCredentials.credentialsParameter`, from the cluster's credentials file
    (a JSON object: parameter name -> {"username", "password", optional "serveraddress"})."""
    param = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
    if not param:
        return None
    if not credentials_file:
        raise ResolveError(f"repositoryCredentials {param}: the cluster names no registryCredentialsFile")
    try:
        with open(credentials_file, encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError) as e:
        raise ResolveError(f"cannot read registry credentials file {credentials_file}: {e}") from None
    entry = table.get(param) if isinstance(table, dict) else None
    if not isinstance(entry, dict) or "username" not in entry or "password" not in entry:
        raise ResolveError(f"registry credentials file {credentials_file} has no username/password for {param}")
    return {k: str(v) for k, v in entry.items() if k in ("username", "password", "serveraddress", "email")}
