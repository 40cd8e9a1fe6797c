"""One run per work dir: an OS file lock on ``<work-dir>/.lock`` that holds the owner's PID.

Two sweeps writing one results.json at once each keep their own list of finished settings,
and the last write wins: the other's settings are gone, and both exit 0. So a run takes an
exclusive ``fcntl.flock`` on the work dir's lock file before it reads or writes anything
there, and a second run is refused with the first one's PID. The kernel drops a flock when
its process dies, however it dies (kill -9 included), so a crashed run never leaves the
work dir locked; the file itself may stay behind and is simply locked again.

    with WorkDirLock('work_dirs/attack'):
        ...  # read results.json, sweep, write outputs
"""
from __future__ import annotations

import errno
import fcntl
import os
from typing import Optional

__all__ = ['LOCK_FILE_NAME', 'WorkDirBusyError', 'WorkDirLock']

LOCK_FILE_NAME = '.lock'


class WorkDirBusyError(RuntimeError):
    """Another live process holds the work dir's lock."""


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 64, 0).decode('ascii', 'replace').strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class WorkDirLock:
    """Hold ``<work_dir>/.lock`` exclusively while the ``with`` block runs.

    The lock file is removed on release, so a finished run leaves nothing behind. Removing
    a lock file is racy unless every taker checks, after locking, that the path still names
    the file it locked (someone may have unlinked it in between): that is what the retry
    loop in :meth:`acquire` does.
    """

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = os.path.join(work_dir, LOCK_FILE_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> 'WorkDirLock':
        os.makedirs(self.work_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_pid(fd)
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                who = f'process {holder}' if holder is not None else 'another process'
                raise WorkDirBusyError(
                    f'the work dir {self.work_dir} is in use by {who} (lock {self.path}): '
                    'wait for that run to finish or stop it, or pass another --work-dir.'
                ) from None
            try:
                same_file = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # the holder released and removed it meanwhile: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode('ascii'), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # still ours: nobody else can hold it while we do
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
