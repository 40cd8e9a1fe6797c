"""The position read-out of a segmentor, layer by layer (tools/position_readout.py).

For every variant of the backbone (as trained; with zero, reflect or replicate padding; with
re-drawn weights), every read-out set (each named layer alone, and all of them fused when
there are several: the authors' multi-level read-out) and every target map, a fresh read-out
is trained on the cached frozen features of the training images, then scored (SPC, MAE) on
the held-out images and on black, white and noise inputs, with bootstrap intervals over
images (:mod:`.metrics`). The same seed gives the same numbers.

Work dir (every file atomic; ``resume=True`` keeps finished read-outs and refuses ones made
from other settings)::

    runs/<variant>/<layers>/<target>.json   one read-out: its settings, losses, scores
    runs/<variant>/<layers>/<target>.pth    its weights (a state dict)
    readout.json, readout.md, readout.png   every read-out, the table, the plot

Usage::

    opts = ReadoutOptions(config, checkpoint, 'work_dirs/readout',
                          layers=['backbone.layer1', 'backbone:3'], paddings=['zero', 'reflect'])
    result = run_readout(opts)
    result['rows'][0]['scores']['natural']['spc']['estimate']
"""
from __future__ import annotations

import io
import math
import os
import os.path as osp
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import mmcv
import torch
from mmengine.logging import MMLogger, print_log

from ..channels.layers import default_layer, unwrap_model
from ..models.builder import load_segmentor
from ..probes.padding import normalize_padding_mode
from ..utils.fileio import file_sha256, read_json, write_bytes_atomic, write_json_atomic
from ..utils.owned_files import claim_folder, owned_folders
from ..utils.run_options import ModelRunOptions
from .base import build_readout, readout_class
from .features import backbone_variant, check_layers, layer_features
from .inputs import (GENERATED_INPUTS, INPUT_KINDS, NATURAL, check_input_kinds, generated_inputs,
                     list_images, load_images)
from .metrics import TargetRanks, image_scores, summarize
from .report import write_readout_report
from .target_maps import check_target_names, target_map, target_map_names
from .training import ReadoutTraining, fit_readout, predict

__all__ = ['READOUT_FORMAT', 'ReadoutOptions', 'readout_model', 'run_readout', 'safe_name']

READOUT_FORMAT = 'posattack.readout/1'
AS_TRAINED = 'trained'
RANDOM_INIT = 'random_init'
FEATURE_STRIDE = 8   # the authors' working size: 28 for a 224 image


@dataclass
class ReadoutOptions(ModelRunOptions):
    """Everything tools/position_readout.py accepts."""
    layers: Optional[Sequence[str]] = None         # None: the tensor the decode head reads
    images: Optional[str] = None                   # None: the config's train image folder
    test_images: Optional[str] = None              # None: the config's test image folder
    image_size: Optional[Sequence[int]] = None     # (H, W); None: the first training image's
    targets: Sequence[str] = field(default_factory=lambda: list(target_map_names()))
    train_inputs: Sequence[str] = (NATURAL, )
    num_noise: int = 8
    readout: str = 'posenet'
    fuse: bool = True                              # also all layers in one read-out
    epochs: int = 15
    readout_batch_size: int = 32
    lr: float = 0.1
    seed: int = 0
    bootstrap: int = 2000
    bootstrap_seed: int = 0
    paddings: Optional[Sequence[str]] = None       # None: the padding the model was built with
    random_init: bool = False
    resume: bool = False
    progress: bool = True


def safe_name(text: str) -> str:
    """A file name for a layer set or variant: 'backbone:3+backbone.layer1' -> 'backbone_3+...'."""
    return ''.join(c if c.isalnum() or c in '._+' else '_' for c in text)


def _variants(opts: ReadoutOptions) -> list[dict]:
    paddings = [normalize_padding_mode(p) for p in opts.paddings] if opts.paddings else [None]
    variants = [dict(name=AS_TRAINED if p is None else f'{AS_TRAINED}_{p}', padding=p,
                     random_init=False) for p in paddings]
    if opts.random_init:
        variants.append(dict(name=RANDOM_INIT if paddings[0] is None
                             else f'{RANDOM_INIT}_{paddings[0]}',
                             padding=paddings[0], random_init=True))
    return variants


def _training(opts: ReadoutOptions) -> ReadoutTraining:
    return ReadoutTraining(epochs=opts.epochs, batch_size=opts.readout_batch_size, lr=opts.lr,
                           seed=opts.seed)


def _check_options(opts: ReadoutOptions) -> None:
    """Every setting that needs no model, checked before anything loads."""
    check_target_names(opts.targets)
    check_input_kinds(opts.train_inputs)
    readout_class(opts.readout)
    _training(opts).check()
    _variants(opts)
    if opts.bootstrap < 0:
        raise ValueError(f'--bootstrap must be >= 0 resamples, got {opts.bootstrap}.')
    if opts.image_size is not None and (len(opts.image_size) != 2 or min(opts.image_size) < 8):
        raise ValueError(f'--image-size takes H W, each >= 8 pixels, got {opts.image_size}.')


def _config_image_folder(cfg, split: str) -> str:
    dataset = cfg.get(f'{split}_dataloader', {}).get('dataset', {})
    root = dataset.get('data_root', '')
    prefix = dataset.get('data_prefix', {}).get('img_path', '')
    if not root and not prefix:
        raise ValueError(f'the config\'s {split}_dataloader names no image folder; pass '
                         f'--{"images" if split == "train" else "test-images"} DIR.')
    return osp.join(root or '', prefix or '')


def _image_lists(cfg, opts: ReadoutOptions) -> tuple[list[str], list[str]]:
    train = list_images(opts.images or _config_image_folder(cfg, 'train'))
    test = list_images(opts.test_images or _config_image_folder(cfg, 'test'))
    if opts.max_images is not None:
        train, test = train[:opts.max_images], test[:opts.max_images]
    shared = set(map(osp.realpath, train)) & set(map(osp.realpath, test))
    if shared:
        raise ValueError(f'{len(shared)} image(s) are both training and held-out images (e.g. '
                         f'{sorted(shared)[0]}); point --test-images at other images.')
    return train, test


def _image_size(opts: ReadoutOptions, first_image: str) -> tuple[int, int]:
    if opts.image_size is not None:
        return int(opts.image_size[0]), int(opts.image_size[1])
    image = mmcv.imread(first_image)
    if image is None:
        raise ValueError(f'{first_image} could not be read as an image.')
    return int(image.shape[0]), int(image.shape[1])


def _inputs(opts: ReadoutOptions, train_paths, test_paths, size) -> tuple[dict, dict]:
    """(training inputs, scored inputs): raw image tensors by input kind."""
    scored = {NATURAL: load_images(test_paths, size)}
    for kind in GENERATED_INPUTS:
        scored[kind] = generated_inputs(kind, size, opts.num_noise, seed=opts.seed)
    train = {NATURAL: load_images(train_paths, size)} if NATURAL in opts.train_inputs else {}
    for kind in opts.train_inputs:
        if kind != NATURAL:  # other noise images than the scored ones
            train[kind] = generated_inputs(kind, size, opts.num_noise, seed=opts.seed + 1)
    return train, scored


def _entry_path(work_dir: str, variant: str, layers: Sequence[str], target: str) -> str:
    return osp.join(work_dir, 'runs', safe_name(variant), safe_name('+'.join(layers)),
                    f'{target}.json')


def _kept(path: str, fingerprint: dict) -> Optional[dict]:
    if not osp.exists(path):
        return None
    previous = read_json(path)
    theirs = previous.get('fingerprint', {})
    different = [k for k in fingerprint if theirs.get(k) != fingerprint[k]]
    if different:
        raise ValueError(f'--resume refused: {path} was made with other settings ('
                         f'{", ".join(different)} differ); use another --work-dir, or drop '
                         '--resume to start over.')
    return previous


def _fit_one(opts, variant, layers, target, size, feature_size, train_feats, scored_feats,
             fingerprint, path) -> dict:
    channels = [train_feats[layer].shape[1] for layer in layers]
    torch.manual_seed(int(opts.seed))   # the read-out's initial weights
    readout = build_readout(opts.readout, channels, feature_size, size)
    target_values = target_map(target, *size)
    started = time.perf_counter()
    losses = fit_readout(readout, [train_feats[layer] for layer in layers], target_values,
                         _training(opts))
    ranks = TargetRanks(target_values)
    scores = {}
    for kind, feats in scored_feats.items():
        maps = predict(readout, [feats[layer] for layer in layers])
        scores[kind] = summarize(image_scores(maps, ranks), opts.bootstrap, opts.bootstrap_seed)
    entry = dict(variant=variant['name'], padding=variant['padding'],
                 random_init=variant['random_init'], layers=list(layers), target=target,
                 channels=channels, losses=losses, scores=scores, fingerprint=fingerprint,
                 seconds=time.perf_counter() - started)
    weights = io.BytesIO()
    torch.save(readout.state_dict(), weights)
    write_bytes_atomic(osp.splitext(path)[0] + '.pth', weights.getvalue())
    write_json_atomic(path, entry)   # last: a .json means the read-out is whole
    return entry


def readout_model(model, cfg, opts: ReadoutOptions) -> dict:
    """:func:`run_readout` on a model already built (``cfg`` names the default images).

    The work dir is claimed first (:mod:`posattack.utils.owned_files`): a folder of the
    user's is refused, and no file posattack did not write is ever replaced."""
    _check_options(opts)
    runs = osp.join(opts.work_dir, 'runs')
    earlier = [osp.relpath(osp.join(root, name), opts.work_dir)   # a work dir from before
               for root, _, names in os.walk(runs) for name in names]  # manifests: adopted
    owned = claim_folder(opts.work_dir, '--work-dir',
                         legacy=[('readout.json', (READOUT_FORMAT, ))],
                         legacy_outputs=['readout.json', 'readout.md', 'readout.png'] + earlier)
    with owned_folders([owned]):
        return _readout_model(model, cfg, opts)


def _readout_model(model, cfg, opts: ReadoutOptions) -> dict:
    logger = MMLogger.get_current_instance()
    model = unwrap_model(model).eval()
    layers = check_layers(model, opts.layers or [default_layer(model)])
    train_paths, test_paths = _image_lists(cfg, opts)
    size = _image_size(opts, train_paths[0])
    feature_size = (max(3, math.ceil(size[0] / FEATURE_STRIDE)),
                    max(3, math.ceil(size[1] / FEATURE_STRIDE)))
    sets = [[layer] for layer in layers] + ([layers] if opts.fuse and len(layers) > 1 else [])
    base = dict(config=osp.abspath(opts.config),
                checkpoint_sha256=file_sha256(opts.checkpoint) if osp.isfile(opts.checkpoint)
                else None, train_images=[osp.abspath(p) for p in train_paths],
                test_images=[osp.abspath(p) for p in test_paths], image_size=list(size),
                feature_size=list(feature_size), train_inputs=list(opts.train_inputs),
                num_noise=opts.num_noise, readout=opts.readout,
                training=_training(opts).to_dict(), bootstrap=opts.bootstrap,
                bootstrap_seed=opts.bootstrap_seed)
    train_raw, scored_raw = _inputs(opts, train_paths, test_paths, size)
    print_log(f'read-out: {len(train_paths)} training and {len(test_paths)} held-out images '
              f'at {size[0]}x{size[1]}, layers {", ".join(layers)}, targets '
              f'{", ".join(opts.targets)}.', logger)
    rows = []
    started = time.perf_counter()
    variants = _variants(opts)
    # every read-out's fingerprint, file and kept result, before anything trains: a work
    # dir made with other settings is refused at once
    keys = [(v, tuple(layer_set), target) for v in range(len(variants)) for layer_set in sets
            for target in opts.targets]
    prints = {key: dict(base, variant=variants[key[0]], layers=list(key[1]), target=key[2])
              for key in keys}
    paths = {key: _entry_path(opts.work_dir, variants[key[0]]['name'], key[1], key[2])
             for key in keys}
    kept_all = {key: _kept(paths[key], prints[key]) if opts.resume else None for key in keys}
    for index, variant in enumerate(variants):
        kept = {key[1:]: entry for key, entry in kept_all.items() if key[0] == index}
        train_feats = scored_feats = None
        if any(entry is None for entry in kept.values()):
            net = model if variant['padding'] is None and not variant['random_init'] else \
                backbone_variant(model, variant['padding'], variant['random_init'], opts.seed)
            batch = opts.batch_size or 8
            train_feats = _merged({kind: layer_features(net, layers, raw, feature_size, batch)
                                   for kind, raw in train_raw.items()})
            scored_feats = {kind: layer_features(net, layers, raw, feature_size, batch)
                            for kind, raw in scored_raw.items()}
        for key, entry in kept.items():
            if entry is None:
                entry = _fit_one(opts, variant, key[0], key[1], size, feature_size, train_feats,
                                 scored_feats, prints[(index, ) + key], paths[(index, ) + key])
            natural = entry['scores'][NATURAL]['spc']['estimate']
            print_log(f'{variant["name"]} {"+".join(key[0])} {key[1]}: SPC {natural:.3f} on '
                      'held-out images', logger)
            rows.append(entry)
    result = dict(format=READOUT_FORMAT, config=opts.config, checkpoint=opts.checkpoint,
                  layers=layers, targets=list(opts.targets), inputs=list(INPUT_KINDS),
                  variants=variants, num_train_images=len(train_paths),
                  num_test_images=len(test_paths), image_size=list(size),
                  feature_size=list(feature_size), train_inputs=list(opts.train_inputs),
                  num_noise=opts.num_noise, readout=opts.readout,
                  training=_training(opts).to_dict(), bootstrap=opts.bootstrap,
                  seconds=time.perf_counter() - started,
                  rows=[{k: v for k, v in row.items() if k != 'fingerprint'} for row in rows])
    write_json_atomic(osp.join(opts.work_dir, 'readout.json'), result)
    write_readout_report(opts.work_dir, result)
    return result


def _merged(by_kind: dict[str, dict]) -> dict[str, torch.Tensor]:
    """The training features of every input kind, stacked per layer."""
    layers = next(iter(by_kind.values())).keys()
    return {layer: torch.cat([feats[layer] for feats in by_kind.values()]) for layer in layers}


def run_readout(opts: ReadoutOptions) -> dict:
    """Load the segmentor of ``opts`` and run :func:`readout_model`."""
    _check_options(opts)   # before the model loads: a bad target name costs nothing
    model, cfg = load_segmentor(opts.config, opts.checkpoint, cfg_options=opts.cfg_options,
                                trust_checkpoint=opts.trust_checkpoint)
    return readout_model(model, cfg, opts)
