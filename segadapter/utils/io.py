"""Atomic file writing: a crash or bad input never leaves a half-written file behind."""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DiskFullError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())  # a full disk may show only here (delayed allocation)
        # mkstemp's file is private (0600; some writers keep that mode when they replace it): give
        # it the mode a plain open() would, or the old file's - after the fsync, which must open
        # it for writing even where that mode is read-only
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except Exception as e:
        full = disk_full_error(e)
        if full is not None:
            raise DiskFullError(f"{path}: {full.strerror or 'no space left on device'} while writing it; "
                                "its earlier version, if any, is intact") from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def staging_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh folder in `parent` to build something in before renaming it into place: mkdtemp's
    unique name with the mode `mkdir` would give it (mkdtemp's own 0700 would follow it there)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def file_mode(path: Path) -> int:
    """The permissions a write to `path` should leave: those of the file it replaces, else what
    `open(path, "w")` would create (0666 less the umask), so that a server or a teammate running
    as another user can read checkpoints and results as they could any other file."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only set
    it, and a file another thread creates in between would get the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_os_error(e: Exception) -> Exception:
    """The OSError a library wrapped in its own exception (safetensors words Rust's io errors as
    '... (os error 28)'), so that a full disk reads as one; else `e` itself."""
    code = re.search(r"\(os error (\d+)\)", str(e))
    return OSError(int(code[1]), os.strerror(int(code[1]))) if code else e


def disk_full_error(e: BaseException) -> OSError | None:
    """The OSError saying no space is left (or the user's quota is reached: a full disk to the
    user either way) behind `e`: `e` itself, or one it was raised while handling (torch.save's
    writer fails again while closing the archive and raises its own RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def to_plain(value: Any) -> Any:
    """Nested dicts with tuples turned into lists and paths into strings: the form JSON and YAML
    round-trip unchanged."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def unwritable_reason(path: str | os.PathLike) -> str | None:
    """Why `path` could not be written at the end of a long run (a message naming it), or None:
    creates its folder and writes (then removes) a file there, so a bad path fails first."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file")
        if any(parent.exists() and not parent.is_dir() for parent in path.parents):
            raise NotADirectoryError(errno.ENOTDIR, "a folder on its path is a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{path}: cannot be written ({e.strerror or e}); choose another path"
    return None
