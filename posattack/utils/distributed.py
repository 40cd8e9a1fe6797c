"""Start the process group for a launcher, on CPU-only machines too.

MMEngine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and fails on a
CPU-only torch, so without CUDA we start gloo ourselves from torchrun's environment;
mmengine's ``all_reduce``, ``get_dist_info`` and ``collect_results`` then work over it.
"""
from __future__ import annotations

import atexit
import os
import sys

import torch
import torch.distributed as torch_dist
from mmengine.dist import init_dist

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


def init_launcher(launcher: str) -> bool:
    """Initialise distributed mode for ``launcher``; returns whether it is distributed."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'unknown launcher {launcher!r}; choose one of {LAUNCHERS}.')
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
    if torch.cuda.is_available():
        init_dist(launcher)
    elif launcher == 'pytorch':
        torch_dist.init_process_group(backend='gloo')
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
    # After a failure, other ranks may be waiting in a collective: leave to torchrun.
    if code == 0 and torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
        atexit._run_exitfuncs()  # what Python would run at exit (loggers, user hooks)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
