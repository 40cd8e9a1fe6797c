"""The pieces of the measured-tables pipeline (tools/tables/pipeline.py): a step runs one tool
unless the file that marks it done is there; independent long steps run JOBS at a time; a
value known only once earlier steps ran (a trained checkpoint's path, the time taken) is
read when its step runs.

    runner = Runner(python='.venv/bin/python', jobs=2, dry_run=False)
    train = [Step(['tools/train.py', cfg, '--work-dir', f'{w}/seed{s}/train'],
                  done=f'{w}/seed{s}/train/last_checkpoint', log=f'{w}/seed{s}/train.out')
             for s in range(5)]
    runner.batch('training seed', train, names=range(5))
    runner.run(Step(['tools/attack.py', cfg, FileText(f'{w}/seed0/train/last_checkpoint')]))

With dry_run every step is printed (``[dry-run] ...`` or ``[done] ...`` when its output is
there) and nothing runs: the plan of a part, at no cost.
"""
from __future__ import annotations

import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class PipelineError(RuntimeError):
    """A step failed or a setting is wrong: the message is the one line the user sees."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Later:
    """A command-line value read when its step runs (in a dry run: a placeholder)."""

    def resolve(self) -> str:
        raise NotImplementedError

    def placeholder(self) -> str:
        raise NotImplementedError


@dataclass
class FileText(Later):
    """The stripped text of a file an earlier step writes, e.g. a ``last_checkpoint``."""

    path: str

    def resolve(self) -> str:
        with open(self.path, encoding='utf-8') as f:
            return f.read().strip()

    def placeholder(self) -> str:
        return self.resolve() if osp.isfile(self.path) else f'$(cat {self.path})'


@dataclass
class Elapsed(Later):
    """Whole seconds since ``start`` (``time.time()``), as the old scripts' ``$(date +%s)``."""

    start: float
    template: str = '{}'

    def resolve(self) -> str:
        return self.template.format(int(time.time() - self.start))

    def placeholder(self) -> str:
        return self.template.format('SECONDS')


@dataclass
class Computed(Later):
    """Any value computed when its step runs (``fn()``), shown as ``shown`` in a dry run."""

    fn: Callable[[], str]
    shown: str

    def resolve(self) -> str:
        return self.fn()

    def placeholder(self) -> str:
        return self.shown


Arg = Union[str, Later]


@dataclass
class Step:
    """One run of a tool: ``python argv`` (or ``argv`` itself with ``program``).

    done: a file whose presence means the step already ran (then it is skipped);
    log: where its output goes when it runs beside others (a batch with JOBS > 1);
    touch: a file written after success;
    accept: exit statuses that are answers, not failures (``Runner.run`` returns them)."""

    argv: Sequence[Arg]
    done: Optional[str] = None
    log: Optional[str] = None
    touch: Optional[str] = None
    program: Optional[str] = None
    env: dict = field(default_factory=dict)
    when: Optional[Callable[[], bool]] = None
    accept: tuple = (0,)

    def is_done(self) -> bool:
        return self.done is not None and osp.exists(self.done)


def check_jobs(value: str) -> int:
    """JOBS as a positive integer, or the old scripts' one-line refusal (exit 2)."""
    if not value.isdigit() or int(value) == 0:
        raise PipelineError(f'JOBS={value} is not a positive integer; set JOBS=1 or more', 2)
    return int(value)


class Runner:
    """Runs steps in order from the repository root (paths are relative to it; the pipeline
    changes into it first); a failed step stops everything after it."""

    def __init__(self, python: str = sys.executable, jobs: int = 1, dry_run: bool = False,
                 out=None):
        self.python = python
        self.jobs = jobs
        self.dry_run = dry_run
        self.out = out or sys.stderr
        self.planned: list[str] = []   # every command shown or run, for tests and --dry-run

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _argv(self, step: Step, resolve: bool) -> list[str]:
        args = [(a.resolve() if resolve else a.placeholder()) if isinstance(a, Later) else str(a)
                for a in step.argv]
        return ([step.program] if step.program else [self.python]) + args

    def _show(self, step: Step, argv: list[str], tag: str) -> None:
        text = ' '.join(shlex.quote(a) for a in argv)
        env = ' '.join(f'{k}={shlex.quote(v)}' for k, v in step.env.items())
        self.planned.append(f'{env} {text}'.strip())
        self.say(f'[{tag}] {env + " " if env else ""}{text}')

    def run(self, step: Step) -> int:
        """Run ``step`` in the foreground unless it is done (or this is a dry run); its exit
        status (0 when it did not run), which is one of ``step.accept`` or raises."""
        if step.when is not None and not step.when():
            if self.dry_run:
                self._show(step, self._argv(step, resolve=False), 'skipped')
            return 0
        if step.is_done():
            if self.dry_run:
                self._show(step, self._argv(step, resolve=False), 'done')
            return 0
        if self.dry_run:
            self._show(step, self._argv(step, resolve=False), 'dry-run')
            return 0
        argv = self._argv(step, resolve=True)
        code = subprocess.call(argv, env=self._env(step))
        if code not in step.accept:
            raise PipelineError(f'{argv[1] if not step.program else argv[0]} failed (exit '
                                f'{code}): {" ".join(shlex.quote(a) for a in argv)}', code)
        if code == 0:
            self._touch(step)
        return code

    def batch(self, what: str, steps: Sequence[Step], names: Iterable) -> None:
        """Run ``steps`` (independent, each about as long) ``jobs`` at a time.

        Batches, not a pool: the steps take about the same time each, so a pool would save
        little. With one job a step runs in the foreground; with more each writes to its
        own ``log`` (two trainings' interleaved output would be unreadable), and a failed
        one stops the run before the next batch: "error: WHAT NAME failed; see LOG"."""
        pending = [(name, step) for name, step in zip(names, steps) if not step.is_done()]
        for name, step in zip(names, steps):
            if step.is_done() and self.dry_run:
                self._show(step, self._argv(step, resolve=False), 'done')
        if self.jobs == 1 or self.dry_run:
            for _, step in pending:
                self.run(step)
            return
        for start in range(0, len(pending), self.jobs):
            members = pending[start:start + self.jobs]
            running = []
            for name, step in members:
                os.makedirs(osp.dirname(step.log), exist_ok=True)
                self.say(f'[batches] {what} {name} -> {step.log}')
                log = open(step.log, 'w')
                running.append((name, step, log, subprocess.Popen(
                    self._argv(step, resolve=True), env=self._env(step),
                    stdout=log, stderr=subprocess.STDOUT)))
            failed = None
            for name, step, log, process in running:
                code = process.wait()
                log.close()
                if code != 0 and failed is None:
                    failed = f'{what} {name} failed; see {step.log}'
                elif code == 0:
                    self._touch(step)
            if failed:
                raise PipelineError(failed)

    def _env(self, step: Step) -> dict:
        return dict(os.environ, **step.env)

    def _touch(self, step: Step) -> None:
        if step.touch:
            with open(step.touch, 'a'):
                pass
