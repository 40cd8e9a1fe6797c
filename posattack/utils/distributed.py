"""Start the process group for a launcher, on CPU-only machines too; end it in one line
when a process stops.

MMEngine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and fails on a
CPU-only torch, so without CUDA we start gloo ourselves from torchrun's environment;
mmengine's ``all_reduce``, ``get_dist_info`` and ``collect_results`` then work over it.

Every collective waits at most ``--dist-timeout`` seconds (default 10 minutes, not gloo's
30): a process that stops (stopped by a signal, stuck, or gone with an error of its own)
used to leave the others waiting half an hour. When a collective fails, each live process
says in one line which rank stopped (:func:`collective_failure_line`), found through the
rendezvous store, where every process that fails posts its error and every process that
waited in vain posts that it waited.
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys
import time
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import init_dist

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
# The longest any collective waits for a peer (gloo's own default is 30 minutes); a
# step that makes the others wait longer (identification on one rank, say) needs more.
DEFAULT_DIST_TIMEOUT = 600
# After a failed collective, how long a process waits for the others to say they are alive.
_ROLL_CALL_SECONDS = 30
_STORE_PREFIX = 'posattack/'
_TIMEOUT: dict = {}  # the collective timeout this process set, for the messages


def init_launcher(launcher: str, timeout: float = DEFAULT_DIST_TIMEOUT) -> bool:
    """Initialise distributed mode for ``launcher``; returns whether it is distributed.

    ``timeout``: seconds any collective waits before it fails (``--dist-timeout``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'unknown launcher {launcher!r}; choose one of {LAUNCHERS}.')
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f'--dist-timeout must be a positive number of seconds, got '
                         f'{timeout!r} (default {DEFAULT_DIST_TIMEOUT}).')
    if launcher == 'none':
        return False
    if torch_dist.is_available() and torch_dist.is_initialized():
        return True
    if launcher == 'pytorch':
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:  # init_process_group would fail deep in its env:// rendezvous
            raise ValueError(
                f'--launcher pytorch needs the environment torchrun sets ({", ".join(missing)} '
                'missing): start the tool with torchrun (python -m torch.distributed.run '
                '--nproc_per_node=N ..., or tools/dist_attack.sh), or drop --launcher.')
    _TIMEOUT['seconds'] = float(timeout)
    if torch.cuda.is_available():
        init_dist(launcher, timeout=int(timeout))
    elif launcher == 'pytorch':
        torch_dist.init_process_group(backend='gloo',
                                      timeout=datetime.timedelta(seconds=timeout))
    else:
        raise RuntimeError(f'launcher {launcher!r} needs CUDA here; on CPU use '
                           '--launcher pytorch with torchrun (tools/dist_attack.sh).')
    return True


def exit_process(code: int) -> None:
    """Exit a command-line tool; under a launcher, tear the process group down first.

    With gloo, a process that leaves the group to the interpreter's shutdown sometimes
    aborts at exit ("terminate called without an active exception", SIGABRT) after all its
    work is done, and torchrun then reports the whole run as failed. So we destroy the
    group ourselves, run the atexit functions, and skip the rest of the interpreter's
    teardown (outputs are flushed; every file we write is already closed and in place).
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        # After a failure, other ranks may be waiting in a collective, and tearing down a
        # group with a failed collective can hang: leave the group to torchrun and the
        # others to their --dist-timeout (they name this rank).
        if code == 0:
            torch_dist.barrier()
            torch_dist.destroy_process_group()
        atexit._run_exitfuncs()  # what Python would run at exit (loggers, user hooks)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _store():
    """The rendezvous store every process of the group reaches, or None."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store
        return _get_default_store()
    except Exception:  # private in torch: without it the line names no rank
        return None


def post_failure(message: str) -> None:
    """Tell the other processes that this one stops, and why (they may be waiting on it)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    store = _store()
    if store is None:
        return
    try:
        store.set_timeout(datetime.timedelta(seconds=5))
        store.set(f'{_STORE_PREFIX}failed/{torch_dist.get_rank()}', message[:500])
    except Exception:
        pass  # the store itself is gone: the others learn it from their own timeout


def is_collective_failure(error: BaseException) -> bool:
    if isinstance(error, getattr(torch_dist, 'DistError', ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        phrase in text for phrase in ('Timed out waiting', 'Connection closed by peer',
                                      'Connection reset by peer', 'gloo/transport'))


def _roll_call(store, rank: int, world_size: int, seconds: float) -> tuple[dict, list[int]]:
    """(failed rank -> its error, ranks that never answered), asked through the store."""
    store.set_timeout(datetime.timedelta(seconds=min(seconds, 10)))
    store.set(f'{_STORE_PREFIX}waited/{rank}', '1')
    others = [r for r in range(world_size) if r != rank]
    failed, deadline = {}, time.monotonic() + seconds
    while True:
        silent = []
        for other in others:
            if store.check([f'{_STORE_PREFIX}failed/{other}']):
                failed[other] = store.get(f'{_STORE_PREFIX}failed/{other}').decode(
                    'utf-8', 'replace')
            elif not store.check([f'{_STORE_PREFIX}waited/{other}']):
                silent.append(other)
        if not silent or time.monotonic() > deadline:
            return failed, silent
        time.sleep(0.5)


def collective_failure_line(error: BaseException,
                            roll_call_seconds: Optional[float] = None) -> Optional[str]:
    """The one line for a collective that failed (timed out, or a peer went away): which
    rank stopped, and what to do. None when ``error`` is no such failure."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()) \
            or not is_collective_failure(error):
        return None
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    timeout = _TIMEOUT.get('seconds')
    seconds = roll_call_seconds if roll_call_seconds is not None else min(
        _ROLL_CALL_SECONDS, timeout or _ROLL_CALL_SECONDS)
    waited = f'rank {rank} waited {timeout:.0f} s' if timeout else f'rank {rank} waited'
    fix = ('every process ends; see that rank\'s log, or raise --dist-timeout (seconds) if a '
           'step makes the others wait longer.')
    store = _store()
    try:
        if store is None:
            raise RuntimeError('no store')
        failed, silent = _roll_call(store, rank, world_size, seconds)
    except Exception:  # the store lives on rank 0 (or the agent), which does not answer
        return (f'a collective failed ({waited}) and the rendezvous store does not answer: '
                f'rank 0 (which holds the store under a plain launch) or the launcher '
                f'stopped; {fix}')
    parts = [f'rank {other} stopped with: {message}' for other, message in sorted(failed.items())]
    if silent:
        names = ', '.join(map(str, silent))
        parts.append(f'rank{"s" if len(silent) > 1 else ""} {names} stopped answering '
                     f'(no collective finished; {waited})')
    if not parts:
        parts.append(f'a collective failed ({waited}; {str(error).splitlines()[0][:200]})')
    return '; '.join(parts) + f': {fix}'

