"""The namespace-holder image of awsvpc tasks, made here so no registry is needed.

Owns a tiny static Linux executable that blocks forever (x86_64 `pause`, aarch64 `ppoll`), and packing
it as a one-file root filesystem tarball (`image_tar`) that `Engine.load_image_tar` imports as
`PAUSE_IMAGE`, like the ECS agent's bundled pause image. Pure byte building: it must not talk to
engines nor import the docker SDK; `actions.images` loads the image where it is missing.
"""

from __future__ import annotations

import io
import struct
import tarfile
from collections.abc import Mapping

PAUSE_IMAGE = "reconciler/pause:1"
_BASE = 0x400000
_HEADERS = 64 + 56

_CODE = {
    # loop: mov eax, 34 (pause); syscall; jmp loop
    "x86_64": (0x3E, bytes.fromhex("b8220000000f05ebf7")),
    # loop: x0..x3 = 0; x8 = 73 (ppoll); svc 0; b loop
    "aarch64": (
        0xB7,
        struct.pack("<7I", 0xD2800000, 0xD2800001, 0xD2800002, 0xD2800003, 0xD2800928, 0xD4000001, 0x17FFFFFA),
    ),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def elf(architecture: str) -> bytes:
    """A static ELF executable for `architecture` (Docker's `Architecture`) that never returns."""
    arch = _ALIASES.get(architecture, architecture)
    if arch not in _CODE:
        raise ValueError(f"no pause binary for architecture {architecture}")
    machine, code = _CODE[arch]
    size = _HEADERS + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, _BASE + _HEADERS, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return header + program + code


def rootfs(architecture: str) -> dict[str, tuple[bytes, int]]:
    """The image's files {path: (content, mode)}. ValueError for an architecture without a binary."""
    return {"pause": (elf(architecture), 0o755)}


def rootfs_tar(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """A tarball of regular files {path: (content, mode)} for `Engine.load_image_tar`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = mode
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def image_tar(architecture: str) -> bytes:
    """The pause image for `architecture` as a root filesystem tarball."""
    return rootfs_tar(rootfs(architecture))
