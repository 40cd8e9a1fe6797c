"""Where in depth a segmentor keeps position: the attack, layer by layer (tools/depth_profile.py).

For every layer along the depth (by default each backbone stage output, each neck output,
and the tensor the decode head reads; :mod:`posattack.profile.depth_layers`) the profile gives

* the channel count and how concentrated the flip-difference scores are (top 1/5/10%
  share, Gini; horizontal and vertical; :mod:`posattack.profile.concentration`);
* the attack at a few fractions (default 5%, 10%, 20%): targeted (the layer's own
  flip-difference ranking) against random removal, with the statistics of a single-layer
  run (:func:`posattack.report.significance.build_statistics`: empirical p over random draws,
  bootstrap CI of the targeted-minus-random gap, periphery-minus-center).

Cost, shared across layers:

1. one identification pass over the images for *all* layers at once: x, hflip(x) and
   vflip(x) go through the model once, with a capture hook on every layer;
2. per layer one sweep pass with the ranking given (clean, targeted and random settings
   evaluated on the same batch): the prefix up to the layer runs once per batch, the rest
   per setting (:class:`posattack.attack.feature_split.FeatureSplit` for outputs the head reads,
   :class:`posattack.attack.prefix_replay.PrefixReplaySplit` for layers inside the backbone).

Work dir (every file atomic; ``resume=True`` keeps what is finished and refuses a work dir
made from another config, checkpoint, image set or settings)::

    identification.json      fingerprint, per layer: channels, tensor shape, scores, concentration
    rankings/<layer>.json    the layer's ChannelRanking (posattack JSON, usable by tools/attack.py)
    layers/<layer>/          results.json, per_image.npz, results.csv, report.md (and with
                             layer_plots its three plots): the work-dir format of
                             tools/attack.py, one per layer
    profile.json, profile.md, concentration_vs_depth.png, gap_vs_depth.png,
    class_drop_by_layer.png

Usage::

    opts = ProfileOptions('configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
                          'iter_600.pth', 'work_dirs/profile')
    profile = run_profile(opts)
    [(row['layer'], row['concentration']['horizontal']['gini']) for row in profile['layers']]
"""
from __future__ import annotations

import os
import os.path as osp
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

import torch
from mmengine import dist
from mmengine.logging import MMLogger, print_log

from ..attack.experiment import RESULTS_FORMAT, RemovalRunOptions, ResumeMismatchError
from ..attack.image_contents import check_image_contents, image_contents
from ..attack.prefix_replay import PrefixReplaySplit
from ..attack.run_bounds import check_bootstrap, check_seeds
from ..attack.run_fingerprint import (content_fingerprint, differing_keys,
                                      outdated_fingerprint_message, resume_refusal)
from ..attack.settings import build_settings
from ..attack.sweep import run_sweep
from ..channels.forward import forward_to_layer
from ..channels.layers import resolve_layer, unwrap_model
from ..channels.modes import TARGETED
from ..channels.ranking import ChannelRanking, resolve_channel_count
from ..data.dataloader import build_test_dataloader
from ..evaluation.metric import summarize_confusion
from ..evaluation.regions import validate_region_specs
from ..models.builder import load_segmentor
from ..readout.target_maps import check_target_names, target_map_names
from ..report.markdown import write_markdown_report, write_report
from ..report.per_image import PerImageCounts, per_image_path
from ..report.results import write_results_csv
from ..report.significance import build_statistics
from ..utils.fileio import file_sha256, read_json, write_json_atomic
from .depth_layers import check_layers_read, depth_layers, first_batch_inputs
from .layer_identification import identification_entry, identify_layers
from .readout_column import readout_column
from .work_dir import claim_profile_dir

PROFILE_FORMAT = 'posattack.profile/1'
IDENTIFICATION_FORMAT = 'posattack.profile_identification/1'
DEFAULT_FRACTIONS = (0.05, 0.1, 0.2)
ALL_LAYERS = 'all'
READOUT_TARGETS = tuple(target_map_names())


@dataclass
class ProfileOptions(RemovalRunOptions):
    """Everything tools/depth_profile.py accepts."""
    layers: Optional[Sequence[str]] = None       # None or ['all']: the depth layers
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    layer_plots: bool = False   # tools/attack.py's three plots in every layer's folder
    readout: bool = False       # the read-out column (posattack.profile.readout_column)
    readout_targets: Sequence[str] = READOUT_TARGETS
    readout_epochs: int = 15


def safe_layer_name(layer: str) -> str:
    """A file name for a layer: 'backbone:3' -> 'backbone_3', 'backbone.layer1' kept."""
    return re.sub(r'[^A-Za-z0-9_.-]', '_', layer).replace('-', 'm')


def _check_options(opts: ProfileOptions) -> None:
    if not opts.fractions:
        raise ValueError('--fractions needs at least one fraction, e.g. 0.05 0.1 0.2.')
    for fraction in opts.fractions:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f'--fractions {fraction!r} is out of range: each must lie in '
                             '(0, 1], e.g. 0.1 for 10% of a layer\'s channels.')
    check_seeds(opts.seeds)  # the attack's bound: memory grows with the draws
    if opts.readout:
        check_target_names(opts.readout_targets)
    check_bootstrap(opts.bootstrap)


def _check_previous(path: str, fingerprint: dict) -> Optional[dict]:
    """The file at ``path`` if it exists and matches ``fingerprint``; refuses a mismatch."""
    if not osp.exists(path):
        return None
    try:
        previous = read_json(path)
    except ValueError:  # truncated (a kill mid-write of an older posattack): ours to redo
        print_log(f'{path} cannot be read: computed again.', 'current')
        return None
    theirs = previous.get('fingerprint', {})
    outdated = outdated_fingerprint_message(path, theirs)
    if outdated:
        raise ResumeMismatchError(outdated)
    different = differing_keys(theirs, fingerprint)
    if different == ['regions']:  # the predictions the new regions need are not kept
        print_log(f'{path}: other regions than now; its layer is evaluated again.',
                  'current')
        return None
    if different:
        raise ResumeMismatchError(resume_refusal(path, theirs, fingerprint, different,
                                                 'profile'))
    return previous


# ----------------------------------------------------------------------------- one layer
def _layer_fingerprint(base: dict, layer: str, opts: ProfileOptions) -> dict:
    return dict(base, layer=layer, ablation='zero', regions=list(opts.regions), ranking=None)


def _profile_layer(model, dataloader, layer: str, ranking: ChannelRanking, opts: ProfileOptions,
                   layer_dir: str, fingerprint: dict, class_names: list[str]) -> dict:
    """The single-layer attack with the ranking given: one sweep pass, statistics, report."""
    logger = MMLogger.get_current_instance()
    results_path = osp.join(layer_dir, 'results.json')
    settings = build_settings(ranking.num_channels, None, list(opts.fractions), opts.seeds,
                              'overall')
    if opts.resume:
        previous = _check_previous(results_path, fingerprint)
        if previous is not None and 'tests' in previous and osp.exists(per_image_path(layer_dir)) \
                and {s.key for s in settings} <= {s['key'] for s in previous['settings']}:
            print_log(f'{layer}: finished in {layer_dir}, kept.', logger)
            return _kept_layer(previous, settings, opts, layer_dir)
    split = PrefixReplaySplit(model, resolve_layer(model, layer))
    region_names = validate_region_specs(opts.regions)
    results = dict(format=RESULTS_FORMAT, config=opts.config, checkpoint=opts.checkpoint,
                   layer=layer, num_images=len(dataloader.dataset),
                   num_channels_total=ranking.num_channels, class_names=class_names,
                   regions=region_names, fingerprint=fingerprint, settings=[],
                   path='fast' if split.fast else f'replay ({split.why_slow})')
    print_log(f'{layer}: {len(settings)} settings on {results["num_images"]} images, '
              f'{ranking.num_channels} channels, '
              f'{"fast path" if split.fast else "prefix replayed per setting"}.', logger)
    started = time.perf_counter()
    ignore_index = getattr(model.decode_head, 'ignore_index', 255)
    state = run_sweep(split, dataloader, settings, ranking.num_channels, opts.regions,
                      len(class_names), ignore_index, ranking=ranking, identify=False,
                      progress=opts.progress)
    for setting in settings:
        flat, per_class = summarize_confusion(state.confusions[setting.key], region_names,
                                              class_names)
        results['settings'].append(dict(setting.to_dict(), key=setting.key, metrics=flat,
                                        per_class=per_class))
    results['statistics'], results['tests'] = build_statistics(
        results['settings'], state.per_image, num_resamples=opts.bootstrap,
        seed=opts.bootstrap_seed, ranking_on_scored_images=True)
    results['seconds'] = time.perf_counter() - started
    if dist.get_rank() == 0:
        # counts first: a layer whose results.json has tests always has its counts
        state.per_image.save(per_image_path(layer_dir))
        ranking.save(osp.join(layer_dir, 'ranking.json'))
    _write_layer(layer_dir, results, opts)
    return results


def _write_layer(layer_dir: str, results: dict, opts: ProfileOptions) -> None:
    if dist.get_rank() != 0:
        return
    if opts.layer_plots:
        write_report(layer_dir, results)
    else:  # the profile draws its own plots; per layer the tables are enough by default
        write_json_atomic(osp.join(layer_dir, 'results.json'), results)
        write_results_csv(osp.join(layer_dir, 'results.csv'), results)
        write_markdown_report(osp.join(layer_dir, 'report.md'), results)


def _kept_layer(previous: dict, settings, opts: ProfileOptions, layer_dir: str) -> dict:
    """A finished layer, cut to this run's settings; its statistics recomputed from the
    per-image counts when the settings or the bootstrap differ from the stored ones."""
    wanted = [s.key for s in settings]
    stats = previous.get('statistics', {})
    if [s['key'] for s in previous['settings']] == wanted \
            and stats.get('num_resamples') == opts.bootstrap \
            and stats.get('seed') == opts.bootstrap_seed:
        return previous
    by_key = {s['key']: s for s in previous['settings']}
    results = dict(previous, settings=[by_key[key] for key in wanted])
    counts = PerImageCounts.load(per_image_path(layer_dir))
    results['statistics'], results['tests'] = build_statistics(
        results['settings'], counts, num_resamples=opts.bootstrap, seed=opts.bootstrap_seed,
        ranking_on_scored_images=True)
    _write_layer(layer_dir, results, opts)
    return results


# ----------------------------------------------------------------------------- the profile
def _resolve_layers(model, inputs, requested: Optional[Sequence[str]]) -> tuple:
    candidates = depth_layers(model, inputs)
    if not requested or list(requested) == [ALL_LAYERS]:
        return candidates, candidates
    if ALL_LAYERS in requested:
        raise ValueError(f'--layers {ALL_LAYERS} stands alone; drop the other names or drop '
                         f'"{ALL_LAYERS}".')
    names = [resolve_layer(model, name).name for name in requested]
    check_layers_read(model, names, inputs, candidates)
    return list(dict.fromkeys(names)), candidates


def run_profile(opts: ProfileOptions) -> dict:
    """Profile the layers; returns the profile dict (also profile.json in the work dir)."""
    _check_options(opts)
    # before the model: a refused run costs nothing
    with claim_profile_dir(opts.work_dir, opts.resume):
        model, cfg = load_segmentor(opts.config, opts.checkpoint, cfg_options=opts.cfg_options,
                                    trust_checkpoint=opts.trust_checkpoint)
        return profile_model(model, cfg, opts)


def profile_model(model, cfg, opts: ProfileOptions) -> dict:
    """:func:`run_profile` on a model already built (``cfg`` gives the test dataloader)."""
    from .report import write_profile_report
    logger = MMLogger.get_current_instance()
    _check_options(opts)
    specs = [opts.regions] if isinstance(opts.regions, (str, dict)) else list(opts.regions)
    if 'full' not in validate_region_specs(specs):
        opts = replace(opts, regions=['full'] + specs)
    model = unwrap_model(model).eval()
    dataloader = build_test_dataloader(cfg, opts.batch_size, opts.max_images)
    inputs = first_batch_inputs(model, dataloader)
    layers, candidates = _resolve_layers(model, inputs, opts.layers)
    if opts.readout and dist.get_world_size() > 1:
        raise ValueError('--readout runs in one process (every process would train the same '
                         'read-outs); drop --readout or --launcher.')
    num_images = len(dataloader.dataset)
    meta = getattr(model, 'dataset_meta', None) or dataloader.dataset.metainfo
    class_names = list(meta['classes'])
    channels = {layer: forward_channels(model, layer, inputs) for layer in layers}
    for layer in layers:  # fractions that give no channel fail here, not after an hour
        for fraction in opts.fractions:
            resolve_channel_count(channels[layer], fraction=float(fraction))
    base = dict(config=osp.abspath(opts.config), checkpoint=osp.abspath(opts.checkpoint),
                checkpoint_sha256=file_sha256(opts.checkpoint) if osp.isfile(opts.checkpoint)
                else None, num_images=num_images)
    # the config as used and the test images: a resume on other data or settings is refused
    base.update(content_fingerprint(cfg, dataloader.dataset, None))
    os.makedirs(opts.work_dir, exist_ok=True)
    print_log(f'profiling {len(layers)} layers on {num_images} images: {", ".join(layers)}',
              logger)
    timings = {}

    ident_path = osp.join(opts.work_dir, 'identification.json')
    ident_fingerprint = dict(base, layers=list(layers))
    # the read-out first: its bad input (image folders) fails before the long attack
    column = readout_column(model, cfg, opts, layers) if opts.readout else None
    identification = _check_previous(ident_path, base) if opts.resume else None
    # the bytes of the test files; on resume, an image edited in place is refused
    contents = check_image_contents(identification.get('image_contents'), dataloader.dataset,
                                    ident_path) if identification else \
        image_contents(dataloader.dataset)
    if identification is not None and not (set(layers) <= set(
            entry['layer'] for entry in identification['layers']) and all(
            osp.isfile(_ranking_path(opts.work_dir, layer)) for layer in layers)):
        identification = None  # new layers: one pass identifies them all again (cheap)
    rankings: dict[str, ChannelRanking] = {}
    if identification is not None:
        identification = dict(identification, layers=[
            entry for entry in identification['layers'] if entry['layer'] in layers])
        for layer in layers:
            rankings[layer] = ChannelRanking.load(_ranking_path(opts.work_dir, layer))
        print_log(f'identification kept from {ident_path}.', logger)
    else:
        started = time.perf_counter()
        accumulators = identify_layers(model, dataloader, layers, channels,
                                       progress=opts.progress)
        timings['identification'] = time.perf_counter() - started
        info = dict(config=osp.basename(opts.config), checkpoint_sha256=base['checkpoint_sha256'],
                    num_classes=len(class_names))
        identification = dict(format=IDENTIFICATION_FORMAT, fingerprint=ident_fingerprint,
                              seconds=timings['identification'], image_contents=contents,
                              layers=[])
        for layer in layers:
            rankings[layer] = accumulators[layer].to_ranking(layer, info)
            identification['layers'].append(identification_entry(layer, accumulators[layer]))
        if dist.get_rank() == 0:
            for layer in layers:  # rankings first: identification.json means all are there
                rankings[layer].save(_ranking_path(opts.work_dir, layer))
            write_json_atomic(ident_path, identification)

    per_layer = {}
    for layer in layers:
        layer_dir = osp.join(opts.work_dir, 'layers', safe_layer_name(layer))
        per_layer[layer] = _profile_layer(
            model, dataloader, layer, rankings[layer], opts, layer_dir,
            _layer_fingerprint(base, layer, opts), class_names)
    profile = build_profile(opts, layers, candidates, identification, per_layer, base, column)
    if dist.get_rank() == 0:
        write_json_atomic(osp.join(opts.work_dir, 'profile.json'), profile)
        paths = write_profile_report(opts.work_dir, profile, per_layer)
        logger.info(f'profile: {paths["markdown"]}')
    return profile


def forward_channels(model, layer: str, inputs) -> int:
    with torch.no_grad():
        return int(forward_to_layer(model, layer, inputs).shape[1])


def _ranking_path(work_dir: str, layer: str) -> str:
    return osp.join(work_dir, 'rankings', f'{safe_layer_name(layer)}.json')


def _tests_by_n(results: dict) -> dict[int, dict]:
    """Per N: the targeted drop, random mean drop, and the tests that concern it."""
    by_n: dict[int, dict] = {}
    settings = {s['key']: s for s in results['settings']}
    stats = results['statistics']
    for s in settings.values():
        if s['mode'] != TARGETED:
            continue
        n = int(s['num_channels'])
        entry = by_n.setdefault(n, dict(num_channels=n, fraction=s.get('fraction')))
        entry['targeted_drop'] = stats['settings'][s['key']]['full']['drop']
        group = stats['random_groups'].get(str(n))
        entry['random_drop'] = group['full']['drop'] if group else None
    # The rank tests give verdicts; the effects (periphery - center) only intervals.
    for test in results['tests'] + list(stats.get('effects', [])):
        n = int(test['num_channels'])
        if n not in by_n:
            continue
        key = test['kind'] if test['kind'] != 'periphery_minus_center' else \
            f'periphery_minus_center_{test["mode"]}'
        entry = {k: test.get(k) for k in ('estimate', 'ci95', 'p_value', 'p_value_holm',
                                          'verdict', 'reason', 'num_draws')
                 if test.get(k) is not None}
        by_n[n][key] = entry
        if test['kind'] == 'targeted_vs_random_draws':   # the gap and its image interval
            by_n[n]['targeted_minus_random'] = entry
    return by_n


def build_profile(opts: ProfileOptions, layers: Sequence[str], candidates: Sequence[str],
                  identification: dict, per_layer: dict[str, dict], base: dict,
                  readout: Optional[dict] = None) -> dict:
    """profile.json: per layer, shallowest first, what the module docstring lists."""
    ident = {entry['layer']: entry for entry in identification['layers']}
    rows = []
    for depth, layer in enumerate(layers):
        results = per_layer[layer]
        path = results.get('path', 'fast')
        rows.append(dict(
            layer=layer, depth=depth, num_channels=results['num_channels_total'],
            read_by=('the decode head (or neck) reads this output directly' if path == 'fast'
                     else 'the layers after it inside the network (a convolution of the next '
                     'stage reads it; removal by a hook, the prefix replayed per setting)'),
            path=path, concentration=ident[layer]['concentration'],
            attack=[entry for _, entry in sorted(_tests_by_n(results).items())],
            results=osp.join('layers', safe_layer_name(layer), 'results.json'),
            seconds=results.get('seconds')))
        if readout is not None:
            rows[-1]['readout'] = readout[layer]
    return dict(format=PROFILE_FORMAT, config=opts.config, checkpoint=opts.checkpoint,
                fingerprint=base, num_images=base['num_images'],
                fractions=[float(f) for f in opts.fractions], seeds=opts.seeds,
                bootstrap=opts.bootstrap, default_layers=list(candidates),
                identification_seconds=identification.get('seconds'),
                class_names=list(per_layer[layers[0]]['class_names']) if layers else [],
                layers=rows)
