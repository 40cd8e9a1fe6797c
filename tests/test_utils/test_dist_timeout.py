"""A process that stops under a launcher ends every process within --dist-timeout, with one
line naming the rank that stopped (issue 23).

Before, the live processes waited in gloo's collective for its 30-minute default and then
failed with a traceback that named no rank. Two CPU processes (gloo) run the tools' own
start and error path (init_launcher, report_bad_input, exit_process) around one
all_reduce; rank 1 either stops (SIGSTOP: alive, silent) or fails with bad input first.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO_ROOT, free_port

WORKER = r"""
import os, signal, sys, time
import torch
from mmengine import dist
from posattack.utils.cli import BAD_INPUT_ERRORS, report_bad_input
from posattack.utils.distributed import exit_process, init_launcher

how = sys.argv[1]
init_launcher('pytorch', timeout=float(sys.argv[2]))
print('ready', flush=True)
try:
    if dist.get_rank() == 1:
        if how == 'stop':
            os.kill(os.getpid(), signal.SIGSTOP)
        raise ValueError('--max-images must be >= 1, got 0.')
    dist.all_reduce(torch.ones(1))
except BAD_INPUT_ERRORS as error:
    exit_process(report_bad_input(error))
exit_process(0)
"""


def _start(how: str, timeout: float, port: int) -> list[subprocess.Popen]:
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), OMP_NUM_THREADS='1',
                   PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT,
                                                            os.environ.get('PYTHONPATH')])))
        processes.append(subprocess.Popen([sys.executable, '-c', WORKER, how, str(timeout)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    return processes


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith('error: ')]


@pytest.mark.slow
def test_a_stopped_rank_ends_the_others_within_the_timeout_naming_it():
    timeout = 5
    processes = _start('stop', timeout, free_port())
    try:
        started = time.monotonic()
        _, stderr = processes[0].communicate(timeout=120)
        waited = time.monotonic() - started
        assert processes[0].returncode == 2, stderr
        lines = _error_lines(stderr)
        assert len(lines) == 1 and 'Traceback' not in stderr, stderr
        assert 'rank 1 stopped answering' in lines[0] and 'rank 0 waited 5 s' in lines[0]
        assert '--dist-timeout' in lines[0]
        # the collective timeout and the roll call (as long as the timeout, at most 30 s)
        assert waited < 60, waited
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
def test_a_rank_that_fails_on_bad_input_is_named_with_its_error_by_the_others():
    processes = _start('fail', 60, free_port())
    try:
        outputs = [process.communicate(timeout=120) for process in processes]
        assert [p.returncode for p in processes] == [2, 2], outputs
        assert _error_lines(outputs[1][1]) == ['error: --max-images must be >= 1, got 0.']
        lines = _error_lines(outputs[0][1])
        assert len(lines) == 1 and 'Traceback' not in outputs[0][1], outputs[0][1]
        assert 'rank 1 stopped with: --max-images must be >= 1, got 0.' in lines[0]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
