"""Probe for tests/test_tools/test_attack_distributed.py: which images each torchrun worker
evaluated.

Python imports ``sitecustomize`` at start-up from sys.path; the test puts this folder on the
PYTHONPATH of tools/dist_attack.sh only, with POSATTACK_SHARD_LOG=PREFIX. Every process
then wraps ``posattack.attack.sweep._batches`` when that module is imported and, at exit, writes
``PREFIX.<RANK>``: one list of image paths per pass over the data. Without the variable it
does nothing.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import sys

_LOG = os.environ.get('POSATTACK_SHARD_LOG')
_TARGET = 'posattack.attack.sweep'


def _wrap(module) -> None:
    passes = []
    batches = module._batches

    def recording_batches(model, dataloader):
        seen = []
        passes.append(seen)
        for inputs, samples in batches(model, dataloader):
            seen.extend(sample.img_path for sample in samples)
            yield inputs, samples

    module._batches = recording_batches

    def dump() -> None:
        world = dict(rank=os.environ.get('RANK'), world_size=os.environ.get('WORLD_SIZE'),
                     passes=passes)
        with open(f'{_LOG}.{os.environ.get("RANK", "0")}', 'w') as f:
            json.dump(world, f)

    atexit.register(dump)


class _WrapOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)  # find the real module the ordinary way
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap(module)

        spec.loader.exec_module = exec_and_wrap
        return spec


if _LOG:
    sys.meta_path.insert(0, _WrapOnImport())
