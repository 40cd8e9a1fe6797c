"""Helpers shared by the attack tests (feature split, sweep, CLI, distributed).

    model = diversify(tiny_segmentor)                 # random weights with varied predictions
    ckpt = save_checkpoint(model, tmp_path / 'm.pth')
    reference = run_mmseg_test(demo_cfg, ckpt, hook=dict(mode='random', num_channels=16))

`run_mmseg_test` is the independent expectation: mmseg's own test loop (MMEngine Runner)
with posattack's ChannelRemovalHook, recording every prediction, its logits and the summed
RegionIoUMetric confusion.
"""
from __future__ import annotations

import contextlib
import copy
import glob
import importlib.util
import io
import json
import os
import os.path as osp
import socket
import sys
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS
from torch import nn

from posattack.evaluation.metric import RegionIoUMetric

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Support files beside this module: the distributed worker, its probe, the reference network.
HELPERS_DIR = osp.dirname(osp.abspath(__file__))
DIST_ATTACK = osp.join(REPO_ROOT, 'tools', 'dist_attack.sh')
# The authors' released rankings (MIT, their notice beside them), shipped with the configs.
AUTHORS_RANKINGS = osp.join(REPO_ROOT, 'configs', 'paper', 'authors_rankings')
# The position probes' tiny setting (tests/test_probes, tests/test_identify/test_grid_probe.py).
PROBE_CONFIG = osp.join(REPO_ROOT, 'configs', 'probes',
                        'gapnet_r18-w16_grid3-location_synthetic.py')
TINY_BACKBONE = dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8, num_stages=4,
                     out_indices=(3, ), norm_cfg=dict(type='BN', requires_grad=True))


def build_mmseg_model(cfg):
    """An mmseg module from its config dict (the caller sets the mmseg scope)."""
    from mmseg.registry import MODELS
    return MODELS.build(cfg)


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """One intra-op thread while a module's tests run (import it to use it).

    On the shared 2-core machine two threads per process are many times slower than one
    (the second thread mostly waits for a core), and one thread is what torchrun gives each
    worker, so in-process and distributed runs do the same float operations.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def diversify(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a freshly initialised segmentor varied predictions.

    At init every residual branch ends in a zero-weight BatchNorm and the classifier is
    nearly zero, so a random model predicts almost one class everywhere and any two
    settings would agree trivially. Random BN affines and statistics and a wider classifier
    make the label maps depend on the features (and on the removed channels).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + torch.rand(shape, generator=generator))
                module.bias.copy_(0.2 * torch.randn(shape, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
        seg = model.decode_head.conv_seg
        seg.weight.copy_(0.5 * torch.randn(seg.weight.shape, generator=generator))
        seg.bias.copy_(0.1 * torch.randn(seg.bias.shape, generator=generator))
    return model.eval()


TINY_CONFIG = """\
# The demo config on a tiny synthetic dataset: 64x128 images, batch size 2.
_base_ = {demo!r}
data_root = {data_root!r}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
model = dict(data_preprocessor=dict(size=(64, 128)))
test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
# identification reads the train images (test pipeline) by default: the same tiny dataset
train_dataloader = dict(dataset=dict(data_root=data_root))
"""


def write_tiny_config(path, data_root) -> str:
    """A user-style config file over the demo config (for the CLI, which reads files)."""
    demo = osp.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_r18-tiny_synthetic-cityscapes.py')
    with open(str(path), 'w') as f:
        f.write(TINY_CONFIG.format(demo=demo, data_root=str(data_root)))
    return str(path)


def make_checkpoint(config: str, path, seed: int = 0) -> str:
    """A diversified random-weight checkpoint for the model ``config`` builds."""
    from posattack.models.builder import load_segmentor
    torch.manual_seed(seed)
    model, _ = load_segmentor(config)
    return save_checkpoint(diversify(model, seed), path)


def tiny_cli_files(root, data_root, **other_seeds: int) -> SimpleNamespace:
    """What the tools' tests run on, made in ``root``: ``config`` (the tiny model over
    ``data_root``), ``checkpoint`` (its weights, seed 0), ``data`` (``data_root``) and, for
    each ``name=seed`` given, a checkpoint of another "training run" at
    ``root/name/model.pth`` (another folder, the same file name, as Runner work dirs are)."""
    config = write_tiny_config(osp.join(str(root), 'tiny.py'), data_root)
    files = SimpleNamespace(root=root, config=config, data=data_root,
                            checkpoint=make_checkpoint(config, osp.join(str(root), 'model.pth')))
    for name, seed in other_seeds.items():
        os.makedirs(osp.join(str(root), name), exist_ok=True)
        setattr(files, name, make_checkpoint(config, osp.join(str(root), name, 'model.pth'),
                                             seed=seed))
    return files


def save_checkpoint(model: nn.Module, path) -> str:
    """A checkpoint the way the brief suggests: weights only, empty meta."""
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return str(path)


def tool_path(name: str) -> str:
    """The path of tools/[<folder>/]<name>.py: tool names are unique across tools/'s folders."""
    found = glob.glob(osp.join(REPO_ROOT, 'tools', f'{name}.py')) + glob.glob(
        osp.join(REPO_ROOT, 'tools', '*', f'{name}.py'))
    assert len(found) == 1, f'tool {name!r}: expected one tools/[<folder>/]{name}.py, found {found}'
    return found[0]


def load_tool(name: str):
    """tools/[<folder>/]<name>.py as a module, so tests call its main() in-process (no import
    cost)."""
    path = tool_path(name)
    # as `python tools/<folder>/<name>.py` does: the script's folder first on sys.path, so
    # the modules beside it (tools/tables/steps.py, ...) import
    if osp.dirname(path) not in sys.path:
        sys.path.insert(0, osp.dirname(path))
    spec = importlib.util.spec_from_file_location(f'posattack_tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_cli():
    """tools/attack.py as a module."""
    return load_tool('attack')


def free_port() -> int:
    """A TCP port nobody listens on now, for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# A process that takes a work dir's lock and sleeps: the stand-in for a second run. It
# loads posattack/utils/work_dir_lock.py by path (stdlib only), so it starts in a blink.
_LOCK_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('work_dir_lock', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.WorkDirLock(sys.argv[2]).acquire()
print('locked', flush=True)
time.sleep(600)
"""


def start_lock_holder(work_dir):
    """A live process holding ``work_dir``'s lock (kill it with ``.kill()``)."""
    import subprocess
    import sys
    module = osp.join(REPO_ROOT, 'posattack', 'utils', 'work_dir_lock.py')
    holder = subprocess.Popen([sys.executable, '-c', _LOCK_HOLDER, module, str(work_dir)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    return holder


def load_json(path):
    with open(path) as f:
        return json.load(f)


def run_cli(cli, argv):
    """(exit code, stderr text) of ``tools/attack.py argv``, run in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main([str(a) for a in argv])
    return code, stderr.getvalue()


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes: to show that nothing changed."""
    files = {}
    for root, _, names in os.walk(str(folder)):
        for name in names:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, str(folder))] = f.read()
    return files


# ----------------------------------------------------------------------------- mmseg's test loop
@METRICS.register_module(name='AttackTestPredictionRecorder', force=True)
class PredictionRecorder(BaseMetric):
    """Keeps every prediction (labels and logits at ori_shape) by image path."""

    default_prefix = 'recorder'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recorded = {}

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            self.results.append((sample['img_path'], sample['pred_sem_seg']['data'][0].clone(),
                                 sample['seg_logits']['data'].clone()))

    def compute_metrics(self, results) -> dict:
        self.recorded = {path: (labels, logits) for path, labels, logits in results}
        return dict(num_images=len(results))


@METRICS.register_module(name='AttackTestRecordingRegionIoU', force=True)
class RecordingRegionIoU(RegionIoUMetric):
    """RegionIoUMetric that also keeps its summed (R, K, K) confusion."""

    def compute_metrics(self, results) -> dict:
        self.total = np.sum(results, axis=0)
        return super().compute_metrics(results)


def run_mmseg_test(demo_cfg, checkpoint: str, hook: Optional[dict], regions=('paper', )):
    """Evaluate with mmseg's test loop and (optionally) a ChannelRemovalHook.

    Returns ``(recorded, confusion, metrics)``: ``{img_path: (labels, logits)}``, the summed
    RegionIoUMetric confusion, and the metrics the Runner reports.
    """
    from mmengine.runner import Runner
    cfg = copy.deepcopy(demo_cfg)
    cfg.custom_hooks = [dict(type='ChannelRemovalHook', **hook)] if hook else []
    cfg.test_evaluator = [dict(type='AttackTestPredictionRecorder'),
                          dict(type='AttackTestRecordingRegionIoU', regions=list(regions))]
    cfg.default_hooks.pop('visualization', None)
    cfg.load_from = checkpoint
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    recorder, region_metric = runner.test_loop.evaluator.metrics
    return recorder.recorded, region_metric.total, metrics
