"""One writer per output file: an OS lock on a sidecar, temporary names renamed into place.

:class:`WriterLock` holds an exclusive ``fcntl.flock`` on ``OUT.lock`` (next to ``OUT``),
which records the holder's pid, host and start time so that a second writer's error can
name it. The OS drops the lock when its process ends, however it ends, so a SIGKILLed run
leaves at most a stale sidecar that the next writer simply takes over.

:func:`output_file` is the contract of the commands whose output is finished in one go
(``hil replay``, ``hil fit``, ``hil characterize``): the lock on the final name, ``--force``
needed to replace an existing file, never an input as the output, and the content written
under a hidden temporary name in the same folder that :func:`os.replace` puts in place only
once it is complete (removed on any failure, and by the next writer after a kill).
:func:`file_error` turns the OS conditions a user can fix (out of space, read-only, no
permission) into one-line :class:`LogError`\\ s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from hil.core.errors import ConfigError, LogError

__all__ = ["WriterLock", "check_not_input", "file_error", "output_file"]

# HDF5 reports a failed write as an OSError whose text carries the C errno.
_NO_SPACE = ("errno = 28", "No space left on device")
_READ_ONLY = ("errno = 30", "Read-only file system")
_NO_PERMISSION = ("errno = 13", "Permission denied")


def file_error(exc: OSError, path: str | os.PathLike) -> LogError | None:
    """A one-line error for out-of-space, read-only and permission failures on ``path``;
    ``None`` for any other OS error."""
    text = str(exc)
    where = str(Path(path).parent) or "."
    if exc.errno == errno.ENOSPC or any(s in text for s in _NO_SPACE):
        return LogError(
            f"out of disk space writing {str(path)!r}: free space in {where!r} or write to "
            "another disk (nothing partial was kept)"
        )
    if exc.errno == errno.EROFS or any(s in text for s in _READ_ONLY):
        return LogError(
            f"cannot write {str(path)!r}: {where!r} is on a read-only file system; "
            "choose an output in a writable folder"
        )
    if exc.errno in (errno.EACCES, errno.EPERM) or any(s in text for s in _NO_PERMISSION):
        return LogError(
            f"cannot write {str(path)!r}: no permission in {where!r}; choose an output in a "
            "folder you may write, or change its permissions"
        )
    return None


def _reraise(exc: OSError, path: str | os.PathLike, what: str) -> LogError:
    return file_error(exc, path) or LogError(f"cannot {what} {str(path)!r}: {exc}")


class WriterLock:
    """An exclusive lock on writing ``path``: ``with WriterLock(path): ...``.

    Acquiring never waits: if another process (or another writer in this one) holds it,
    :class:`LogError` names the holder. ``release`` removes the sidecar and is idempotent.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")
        self._fd: int | None = None
        self._acquire()

    def _acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _reraise(exc, self.path, "lock") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LogError(
                    f"{str(self.path)!r} is being written by {holder}; wait for that writer to "
                    "finish (or stop it) before writing, resuming or overwriting it"
                ) from None
            # A releasing holder unlinks the sidecar before unlocking: if the name now
            # points elsewhere, this lock is on a removed file; take the new one instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())

    def release(self) -> None:
        """Give the lock up and remove the sidecar."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {holder['pid']} on host {holder['host']} since {holder['since_utc']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another writer (its lock file names no holder yet)"


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """:class:`ConfigError` if ``out`` is one of ``inputs`` (same file, hard or symbolic link)."""
    out = Path(out)
    if not out.exists():
        return
    for path in inputs:
        if Path(path).exists() and os.path.samefile(out, path):
            raise ConfigError(
                f"the output {str(out)!r} is the input {str(path)!r} (the same file or a link "
                "to it); write the output to a new file"
            )


@contextlib.contextmanager
def output_file(
    out: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Lock ``out``, then yield a temporary path beside it that replaces ``out`` on success.

    Refuses an ``out`` that is one of ``inputs``, and an existing ``out`` unless ``force``.
    On any failure the temporary file is removed and ``out`` is left as it was.
    """
    out = Path(out)
    check_not_input(out, inputs)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    with WriterLock(out):
        if out.exists() and not force:
            raise ConfigError(f"{str(out)!r} exists; pass --force to overwrite it")
        # Whoever wrote these was killed before it could remove them: the lock we hold is
        # the only one on ``out``, and the OS released the dead writer's.
        for stale in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
            stale.unlink(missing_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            yield tmp
            os.replace(tmp, out)
        except OSError as exc:
            raise _reraise(exc, out, "write") from exc
        finally:
            tmp.unlink(missing_ok=True)
