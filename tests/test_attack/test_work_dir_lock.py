"""WorkDirLock: one run per work dir, released on any exit of its holder, kill -9 included."""
from __future__ import annotations

import os
import signal

import pytest
from helpers import start_lock_holder

from posattack.utils.work_dir_lock import LOCK_FILE_NAME, WorkDirBusyError, WorkDirLock


@pytest.mark.slow
def test_a_second_taker_is_refused_with_the_holders_pid(tmp_path):
    holder = start_lock_holder(tmp_path)
    try:
        with pytest.raises(WorkDirBusyError) as error:
            WorkDirLock(str(tmp_path)).acquire()
        message = str(error.value)
        assert f'in use by process {holder.pid}' in message
        assert '--work-dir' in message and '\n' not in message
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_the_lock_is_free_again_after_the_holder_is_killed_with_sigkill(tmp_path):
    holder = start_lock_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)  # no cleanup code runs: the kernel drops the flock
    holder.wait()
    assert (tmp_path / LOCK_FILE_NAME).read_text().strip() == str(holder.pid)  # left behind
    with WorkDirLock(str(tmp_path)):
        assert (tmp_path / LOCK_FILE_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_FILE_NAME).exists()


def test_release_on_an_exception_removes_the_lock_file(tmp_path):
    with pytest.raises(KeyError):
        with WorkDirLock(str(tmp_path / 'work')):
            raise KeyError('boom')
    assert os.listdir(tmp_path / 'work') == []
    with WorkDirLock(str(tmp_path / 'work')):  # and it can be taken again
        pass


def test_one_process_cannot_take_it_twice(tmp_path):
    """flock locks belong to open files: a second open in the same process is refused too,
    so two runs started from one Python session cannot share a work dir either."""
    with WorkDirLock(str(tmp_path)):
        with pytest.raises(WorkDirBusyError, match=f'process {os.getpid()}'):
            WorkDirLock(str(tmp_path)).acquire()
