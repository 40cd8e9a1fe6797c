"""tools/consistency.py end to end, against the segmentor run by hand and mmseg's own loop.

The CLI runs in this process (its ``main(argv)``) on the demo model with diversified random
weights and the first 2 synthetic val images (64x128). Its numbers are checked against

- the segmentor run here on the two crops of each image, at the corners ``shift_origins``
  draws, with the agreement counted in plain numpy on the source image grid;
- MMEngine's Runner.test() with the TTA model, the way mmseg's tools/test.py --tta builds
  it (``tta_model.module = model; model = tta_model``) and ``load_from`` a checkpoint.
"""
from __future__ import annotations

import glob
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from helpers import load_tool, one_torch_thread, run_cli, tiny_cli_files  # noqa: F401
from mmseg.structures import SegDataSample

from posattack.models.builder import load_segmentor
from posattack.training.shift_crops import shift_origins

MAX_SHIFTS = (4, 8)
NUM_IMAGES = 2
RUN_ARGS = ['--max-images', NUM_IMAGES, '--max-shift', *MAX_SHIFTS, '--seed', 3]
PAPER_PREFIXES = ('', 'left.', 'right.', 'center.', 'periphery.')


CLI = load_tool('consistency')


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('consistency_cli'), synthetic_root)


def _run(files, work_dir, extra=()):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 *RUN_ARGS, *extra])
    assert code == 0, stderr
    with open(osp.join(work_dir, 'consistency.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def cli_result(files):
    return _run(files, files.root / 'run')


def test_writes_metrics_and_settings(files, cli_result):
    assert cli_result['max_shifts'] == list(MAX_SHIFTS) and cli_result['trials'] == 1
    assert cli_result['seed'] == 3 and cli_result['num_images'] == NUM_IMAGES
    assert cli_result['config'] == osp.abspath(files.config)
    assert cli_result['checkpoint'] == osp.abspath(files.checkpoint)
    assert len(cli_result['checkpoint_sha256']) == 64
    assert cli_result['regions'] == ['paper']
    metrics = cli_result['metrics']
    for s in MAX_SHIFTS:
        for prefix in PAPER_PREFIXES:
            for name in ('Cons', 'agreement_mIoU'):
                assert 0 <= metrics[f'{prefix}{name}.{s}'] <= 100, (prefix, name, s)
        assert f'periphery_minus_center.Cons.{s}' in metrics
    # the zero-padded demo model is not shift-equivariant
    assert metrics['Cons.8'] < 100
    with open(files.root / 'run' / 'consistency_details.json') as f:
        details = json.load(f)
    assert details['num_images'] == NUM_IMAGES and details['metrics'] == metrics
    assert sorted(details['max_shifts']) == sorted(str(s) for s in MAX_SHIFTS)


def test_same_seed_same_numbers(files, cli_result, tmp_path):
    again = _run(files, tmp_path / 'again')
    assert again['metrics'] == cli_result['metrics']


def _image_paths(files):
    # mmseg's BaseSegDataset sorts its images by path; --max-images keeps the first ones
    paths = sorted(glob.glob(osp.join(str(files.data), 'leftImg8bit', 'val', '*',
                                      '*_leftImg8bit.png')))
    return paths[:NUM_IMAGES]


def _predict(segmentor, image, origin, crop_shape):
    """The segmentor's labels on one crop of a BGR HWC uint8 image (mmseg's input layout)."""
    (y, x), (h, w) = origin, crop_shape
    crop = torch.from_numpy(np.ascontiguousarray(image[y:y + h, x:x + w].transpose(2, 0, 1)))
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    with torch.no_grad():
        result = segmentor.test_step(dict(inputs=[crop], data_samples=[sample]))
    return result[0].pred_sem_seg.data[0].numpy()


def test_numbers_equal_a_count_over_the_segmentor_run_by_hand(files, cli_result):
    segmentor, _ = load_segmentor(files.config, files.checkpoint)
    counts = {s: dict(full=np.zeros(2, np.int64), center=np.zeros(2, np.int64))
              for s in MAX_SHIFTS}
    seen_labels = set()
    for path in _image_paths(files):
        image = mmcv.imread(path)  # as LoadImageFromFile; the pipeline's Resize is a no-op
        height, width = image.shape[:2]
        assert (height, width) == (64, 128)
        for s in MAX_SHIFTS:
            crop_shape = (height - s, width - s)
            corners = shift_origins(3, osp.basename(path), s, 1)[0]
            # both crops' labels laid onto the source image; -1 where a crop does not reach
            on_source = []
            for (y, x) in corners:
                labels = np.full((height, width), -1)
                labels[y:y + crop_shape[0], x:x + crop_shape[1]] = _predict(
                    segmentor, image, (y, x), crop_shape)
                seen_labels.update(np.unique(labels[labels >= 0]).tolist())
                on_source.append(labels)
            both = (on_source[0] >= 0) & (on_source[1] >= 0)
            agree = both & (on_source[0] == on_source[1])
            center = np.zeros_like(both)
            center[:, width // 4:(3 * width) // 4] = True
            counts[s]['full'] += [agree.sum(), both.sum()]
            counts[s]['center'] += [(agree & center).sum(), (both & center).sum()]
    assert len(seen_labels) >= 3  # varied predictions: agreement is not trivial
    metrics = cli_result['metrics']
    for s in MAX_SHIFTS:
        for region, prefix in (('full', ''), ('center', 'center.')):
            agree, total = counts[s][region]
            assert metrics[f'{prefix}Cons.{s}'] == pytest.approx(100 * agree / total,
                                                                 abs=0.005), (region, s)


def test_mmseg_runner_with_tta_model_gives_the_cli_numbers(files, cli_result, tmp_path):
    """The recipe for mmseg's tools/test.py --tta (its cfg surgery, then Runner.test())."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(files.config)
    cfg.tta_model = dict(type='posattack.ShiftPairTTAModel')
    cfg.tta_pipeline = list(cfg.test_pipeline) + [dict(
        type='posattack.ShiftConsistencyPairs', max_shifts=list(MAX_SHIFTS), trials=1,
        seed=3)]
    cfg.test_evaluator = dict(type='posattack.ShiftConsistencyMetric', regions=['paper'])
    # what mmseg 1.2.2 tools/test.py does with --tta
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    cfg.test_dataloader.dataset.indices = NUM_IMAGES  # as --max-images
    cfg.load_from = files.checkpoint  # plain segmentor keys: mmengine unwraps the TTA model
    cfg.work_dir = str(tmp_path / 'runner')
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert metrics == cli_result['metrics']
    # the checkpoint did reach the wrapped segmentor
    state = torch.load(files.checkpoint, map_location='cpu')['state_dict']
    loaded = runner.model.module.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


@pytest.mark.parametrize('max_shift', [64, 100])
def test_shift_as_large_as_the_image_exits_2_naming_the_size(files, tmp_path, max_shift):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--max-images', 1, '--max-shift', max_shift])
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and '64x128' in last and str(max_shift) in last
    assert not osp.exists(tmp_path / 'consistency.json')


def test_zero_trials_exit_2_naming_trials(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--trials', 0])
    assert code == 2
    lines = stderr.strip().splitlines()  # refused before anything is loaded: one line
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'trials' in lines[0]


# ----------------------------------------------------------------------------- issue 13
def test_crops_that_need_not_overlap_exit_2_with_the_largest_shift_that_works(files,
                                                                             tmp_path):
    """On a 64x128 input, crops of 32x96 offset by up to 32 rows may share no row."""
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--max-images', 1, '--max-shift', 32])
    assert code == 2
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    assert 'max shift 32 on a 64x128 network input' in stderr
    assert 'Use --max-shift 31 or less' in stderr


def test_nan_checkpoint_exits_2_naming_the_module(files, tmp_path):
    checkpoint = torch.load(files.checkpoint, map_location='cpu')
    checkpoint['state_dict']['decode_head.conv_seg.bias'][0] = float('inf')
    path = str(tmp_path / 'inf.pth')
    torch.save(checkpoint, path)
    code, stderr = run_cli(CLI, [files.config, path, '--work-dir', tmp_path / 'w',
                                 '--max-images', 1, '--max-shift', 4])
    assert code == 2
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    assert 'the model produces NaN/inf logits on the first test batch' in stderr
    assert 'first in module decode_head.conv_seg (Conv2d)' in stderr
    assert 'decode_head.conv_seg.bias' in stderr
    assert not osp.exists(tmp_path / 'w' / 'consistency.json')


def test_launcher_outside_torchrun_and_bad_cfg_options(files, tmp_path, monkeypatch, capsys):
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--launcher', 'pytorch'])
    assert code == 2 and stderr.count('\n') == 1
    assert '--launcher pytorch needs the environment torchrun sets' in stderr
    with pytest.raises(SystemExit) as exit_info:
        CLI.main([files.config, files.checkpoint, '--cfg-options', 'model.x'])
    assert exit_info.value.code == 2
    assert "'model.x' is not KEY=VALUE" in capsys.readouterr().err
