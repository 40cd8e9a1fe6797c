"""The whole position attack as one call: identify, sweep, report (what tools/attack.py runs).

Work-dir contract (every file is written atomically; ``resume=True`` keeps finished
settings and refuses a work dir made from another config, checkpoint, layer, test images
or ranking, :mod:`posattack.attack.run_fingerprint`): ranking.json, per_image.npz (what the
bootstrap resamples), results.json (with the ``statistics`` and ``tests`` of
:mod:`posattack.report.significance`), results.csv, report.md, plots, overlays/ with
overlays.json (the panels of this run, :mod:`posattack.report.overlay_manifest`), and .lock (one
run at a time, :mod:`posattack.utils.work_dir_lock`). A fresh run first removes what an earlier
run wrote (:mod:`posattack.attack.work_dir`). per_image.npz is written before results.json, so a
setting listed in results.json always has its per-image counts; one without them (a work
dir from before per-image statistics) is evaluated again on --resume.
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from mmengine import dist
from mmengine.logging import MMLogger, print_log

from ..channels.layers import default_layer, resolve_layer
from ..channels.modes import CLEAN, RANDOM, TARGETED
from ..channels.ranking import ChannelRanking
from ..channels.ranking_comparison import compare_rankings
from ..data.dataloader import build_test_dataloader
from ..models.builder import load_segmentor
from ..report.markdown import format_summary_table, write_report
from ..report.overlay import OverlaySelector, render_panel, save_panel
from ..report.overlay_manifest import overlays_up_to_date, reported_overlays, write_overlay_manifest
from ..report.per_image import PerImageCounts
from ..report.pooling import paper_claims
from ..report.rank_tests import DEFAULT_EXCEEDANCES, DEFAULT_MAX_DRAWS, draw_round_sizes
from ..report.significance import build_statistics
from ..report.test_design import TestDesign
from ..utils.fileio import file_sha256
from ..utils.owned_files import unused_path
from ..utils.run_options import ModelRunOptions
# issue 13: nothing silently wrong (see docs/reliability.md)
from .attack_run import AttackRun
from .checks import (check_attack_region, check_ranking_checkpoint, check_ranking_layer,
                     image_groups_checked, probe_attack)
from .feature_split import FeatureSplit
from .identification_images import (DEFAULT_IDENTIFY_MAX_IMAGES, DEFAULT_IDENTIFY_ON, SAME_IMAGES,
                                    held_out_loader, identify_held_out, ranking_source)
from .image_contents import check_image_contents, image_contents
from .option_checks import CheckedOptions, check_attack_options
from .ranking_inputs import load_other_ranking, load_ranking
from .resume_files import RESULTS_FORMAT, load_previous_per_image, read_results_file
from .run_bounds import check_per_image_memory
from .run_fingerprint import (content_fingerprint, differing_keys, outdated_fingerprint_message,
                              ranking_provenance, ranking_provenance_problem, resume_refusal)
from .run_progress import RunProgress, shard_size
from .sequential_draws import (first_round_size, more_draws_needed, primary_draws, primary_order,
                               primary_random_keys)
from .settings import AttackSetting, build_settings
from .sweep import OverlayRequest, run_sweep
from .work_dir import check_outside_test_data, claim_work_dir, clear_earlier_outputs

DEFAULT_REGIONS = ('paper', dict(type='border', bands=4))
DEFAULT_NUM_CHANNELS_FRACTIONS = (0.01, 0.05, 0.1, 0.2)
# Random draws per exploratory N (every N but the primary 5%, whose draws are sequential:
# 19 to --max-draws, see posattack.attack.sequential_draws). 8 keeps them cheap; their rank
# p-values cannot go below 1/9, so they describe, and only --seeds 19+ lets them test.
DEFAULT_SEEDS = 8
DEFAULT_BOOTSTRAP = 2000
OVERLAY_TILE_WIDTH = 512  # a 2048-wide frame would make a 10,000-pixel panel


@dataclass
class RemovalRunOptions(ModelRunOptions):
    """What a channel-removal run on one model takes, tools/attack.py's and
    tools/depth_profile.py's alike: random draws, the bootstrap, regions, resume."""
    seeds: int = DEFAULT_SEEDS
    bootstrap: int = DEFAULT_BOOTSTRAP
    bootstrap_seed: int = 0
    regions: Sequence = field(default_factory=lambda: list(DEFAULT_REGIONS))
    resume: bool = False
    progress: bool = True


@dataclass
class AttackOptions(RemovalRunOptions):
    """Everything tools/attack.py accepts; the defaults give the paper's experiment."""
    layer: Optional[str] = None
    ranking: Optional[str] = None
    ranking_format: str = 'auto'
    attack_region: Union[str, Sequence[str]] = 'overall'
    num_channels: Optional[Sequence[int]] = None
    fractions: Optional[Sequence[float]] = None
    ablation: str = 'zero'
    show_dir: Optional[str] = None
    num_overlays: int = 4
    compare_ranking: Optional[str] = None
    compare_ranking_format: str = 'auto'
    allow_ranking_layer_mismatch: bool = False
    allow_ranking_from_other_checkpoint: bool = False
    max_draws: int = DEFAULT_MAX_DRAWS
    exceedances: Optional[int] = DEFAULT_EXCEEDANCES
    bootstrap_groups: Optional[str] = None
    identify_on: str = DEFAULT_IDENTIFY_ON
    identify_max_images: Optional[int] = DEFAULT_IDENTIFY_MAX_IMAGES

    @property
    def design(self) -> TestDesign:
        return TestDesign(exceedances=self.exceedances, max_draws=self.max_draws)


class ResumeMismatchError(RuntimeError):
    """The work dir holds results of a different experiment."""


def _fingerprint(opts: AttackOptions, checkpoint_sha: str, layer: str, num_images: int) -> dict:
    return dict(config=osp.abspath(opts.config), checkpoint=osp.abspath(opts.checkpoint),
                checkpoint_sha256=checkpoint_sha, layer=layer, ablation=opts.ablation,
                regions=list(opts.regions), num_images=num_images,
                ranking=osp.abspath(opts.ranking) if opts.ranking else None,
                identification=None if opts.ranking else dict(
                    split=opts.identify_on, max_images=opts.identify_max_images))


def _load_previous(path: str, fingerprint: dict) -> Optional[dict]:
    """The earlier run's results to build on; None when only its regions differ (every
    setting is evaluated again: the per-image predictions the new regions need are not
    kept); refused when anything else differs."""
    previous = read_results_file(path)
    theirs = previous.get('fingerprint', {})
    outdated = outdated_fingerprint_message(path, theirs)
    if outdated:
        raise ResumeMismatchError(outdated)
    different = differing_keys(theirs, fingerprint)
    if different == ['regions']:
        print_log(f'--resume with other regions ({theirs.get("regions")} in {path}, '
                  f'{fingerprint["regions"]} now): every setting is evaluated again, since '
                  'the per-image predictions the new regions need are not kept; the ranking '
                  'and the overlays are kept.', 'current')
        return None
    if different:
        raise ResumeMismatchError(resume_refusal(path, theirs, fingerprint, different,
                                                 'experiment'))
    return previous


def _num_channels(split: FeatureSplit, dataloader) -> int:
    """Channels of the attacked tensor, from one forward of the dataset's first image.

    Not the first batch of this rank's shard: with more processes than images it is empty.
    """
    batch = dataloader.collate_fn([dataloader.dataset[0]])
    with torch.no_grad():
        inputs = split.model.data_preprocessor(batch, False)['inputs'][:1]
        return int(split.attacked(split.prefix(inputs)).shape[1])


def _overlay_request(settings: list[AttackSetting], num_total: int,
                     num_overlays: int) -> Optional[OverlayRequest]:
    """Overlays show the targeted count nearest 10% of the channels, and random seed 0."""
    targeted = [s for s in settings if s.mode == TARGETED]
    if num_overlays <= 0 or not targeted:
        return None
    chosen = min(targeted, key=lambda s: (abs(s.num_channels - 0.1 * num_total), s.num_channels))
    randoms = [s for s in settings if s.mode == RANDOM and s.num_channels == chosen.num_channels]
    random = min(randoms, key=lambda s: s.seed) if randoms else AttackSetting(
        'random', chosen.num_channels, chosen.fraction, seed=0)
    return OverlayRequest(AttackSetting(CLEAN), chosen, random, OverlaySelector(num_overlays))


def run_attack(opts: AttackOptions) -> dict:
    """Run the experiment; returns the results dict (also written to the work dir)."""
    # Every option first, in one step: a refused run leaves no folder and builds no model.
    checked = check_attack_options(opts)
    # Then the folders usable, and this run the only one in the work dir.
    with claim_work_dir(opts.work_dir, opts.show_dir, resume=opts.resume):
        return _run_attack_claimed(checked)


def _run_attack_claimed(checked: CheckedOptions) -> dict:
    logger = MMLogger.get_current_instance()
    opts, design, attack_regions = checked.opts, checked.design, checked.attack_regions
    model, cfg = load_segmentor(opts.config, opts.checkpoint, cfg_options=opts.cfg_options,
                                trust_checkpoint=opts.trust_checkpoint)
    layer = opts.layer or default_layer(model)
    split = FeatureSplit(model, resolve_layer(model, layer))   # the layer's one resolution
    if not split.fast:
        print_log(f'fast path off ({split.why_slow}): one full forward per setting.', logger)
    dataloader = build_test_dataloader(cfg, opts.batch_size, opts.max_images)
    check_outside_test_data(dataloader.dataset, {'--work-dir': opts.work_dir,
                                                 '--show-dir': opts.show_dir})
    num_images = len(dataloader.dataset)
    num_total = _num_channels(split, dataloader)

    rank = dist.get_rank()
    results_path = osp.join(opts.work_dir, 'results.json')
    ranking_path = osp.join(opts.work_dir, 'ranking.json')
    checkpoint_sha = file_sha256(opts.checkpoint)
    fingerprint = _fingerprint(opts, checkpoint_sha, layer, num_images)
    fingerprint.update(content_fingerprint(cfg, dataloader.dataset, opts.ranking))
    previous = None
    if opts.resume and osp.exists(results_path):
        previous = _load_previous(results_path, fingerprint)
    # the bytes of every test file: on resume only those whose size or time changed
    contents = check_image_contents(previous.get('image_contents'), dataloader.dataset,
                                    results_path) if previous is not None \
        else image_contents(dataloader.dataset)

    ranking = load_ranking(opts, ranking_path)
    check_ranking_layer(model, ranking, split.layer_ref, opts.ranking,
                        opts.allow_ranking_layer_mismatch)
    if ranking is not None and not opts.ranking:  # ranking.json left by an earlier run
        problem = ranking_provenance_problem(ranking.model, fingerprint, ranking_path)
        if problem:
            raise ResumeMismatchError(problem)
    if opts.ranking:
        check_ranking_checkpoint(ranking, checkpoint_sha, opts.ranking,
                                 opts.allow_ranking_from_other_checkpoint)
    if ranking is not None:
        ranking.check_compatible(num_total)
    other_ranking = load_other_ranking(opts, num_total)
    if opts.num_channels is None and opts.fractions is None:
        fractions, counts = list(DEFAULT_NUM_CHANNELS_FRACTIONS), None
    else:
        fractions, counts = opts.fractions, opts.num_channels
    settings = build_settings(num_total, counts, fractions, opts.seeds, attack_regions)
    check_per_image_memory(len(settings), num_images, len(model.dataset_meta['classes']))
    if any(s.mode == TARGETED for s in settings):
        for attack_region in attack_regions:
            check_attack_region(attack_region, ranking)
    groups_of = image_groups_checked(opts.bootstrap_groups, dataloader.dataset)
    primary_n = design.primary_num_channels(num_total)
    if not any(s.mode == TARGETED and s.num_channels == primary_n for s in settings):
        print_log(f'no primary test: the run has no targeted setting at the primary count '
                  f'N={primary_n} (5% of {num_total} channels); every test is exploratory.',
                  logger)
        primary_n = None
    else:
        settings += primary_draws(settings, primary_n, first_round_size(opts.seeds, design))
    identify_loader = None   # checked before any compute, used after
    if ranking is None and opts.identify_on != SAME_IMAGES and (
            other_ranking is not None or any(s.mode == TARGETED for s in settings)):
        identify_loader = held_out_loader(cfg, opts.identify_on, dataloader.dataset,
                                          opts.batch_size, opts.identify_max_images)
    probe_attack(split, dataloader, num_total)  # finite logits; the tensor reaches them
    # Only now that the input checked out: a refused run leaves no work dir behind.
    os.makedirs(opts.work_dir, exist_ok=True)
    if not opts.resume and rank == 0:
        clear_earlier_outputs(opts.work_dir, opts.show_dir, keep=[opts.ranking])

    source = ranking_source(opts, ranking, dataloader.dataset)
    if identify_loader is not None:
        ranking = identify_held_out(
            model, identify_loader, split.layer_ref, opts.identify_on, num_images,
            progress=opts.progress, model_info=dict(
                config=osp.basename(opts.config), checkpoint_sha256=checkpoint_sha,
                num_classes=len(model.dataset_meta['classes']),
                identified_on=ranking_provenance(fingerprint)))
        source = ranking_source(opts, ranking, dataloader.dataset)
        if rank == 0:
            ranking.save(ranking_path)
    done = {s['key']: s for s in (previous or {}).get('settings', [])}
    per_image = load_previous_per_image(opts.work_dir, fingerprint, previous) \
        if previous is not None else None
    without_counts = [key for key in done if per_image is None or key not in per_image.tp]
    if without_counts:
        # From a run before per-image statistics: no bootstrap is possible on them.
        print_log(f'{len(without_counts)} finished settings have no per-image counts (a work '
                  'dir from an older posattack): evaluating them again.', logger)
        done = {key: s for key, s in done.items() if key not in without_counts}
    results = dict(format=RESULTS_FORMAT, config=opts.config, checkpoint=opts.checkpoint,
                   layer=layer, num_images=num_images, num_channels_total=num_total,
                   class_names=list(model.dataset_meta['classes']),
                   regions=checked.region_names,
                   fingerprint=fingerprint, test_design=design.to_dict(),
                   ranking_source=source, image_contents=contents,
                   settings=list(done.values()))
    run = AttackRun(opts, split, dataloader, num_total, results, checkpoint_sha)
    overlay = _overlay_request(settings, num_total, opts.num_overlays) \
        if opts.show_dir else None
    rounds = draw_round_sizes(design.max_draws, first_round_size(opts.seeds, design))
    # one bar and one estimate for every sweep of the run, draw rounds included
    tracker = RunProgress(shard_size(dataloader), enabled=opts.progress and rank == 0)
    while True:
        finished = {s['key'] for s in results['settings']}
        pending = [s for s in settings if s.key not in finished]
        if not pending:
            print_log(f'nothing left to do: all settings are in {results_path}.', logger)
        else:
            print_log(f'{len(pending)} settings to evaluate on {num_images} images '
                      f'(layer {layer}, {num_total} channels); {len(finished)} already done.',
                      logger)
            if overlay is not None and (overlay.targeted.key not in {s.key for s in pending}
                                        or overlays_up_to_date(opts.work_dir, opts.show_dir,
                                                               overlay)):
                # Its settings are done (a resume adding draws): the panels on disk stand, or
                # _render_missing_overlays draws them; a sweep without them would record none.
                overlay = None
            per_image = _sweep(run, pending, ranking, overlay, per_image,
                               identify_anyway=other_ranking is not None, progress=tracker)
            overlay = None  # drawn with the first pass only
            if ranking is None and osp.exists(ranking_path):
                dist.barrier()   # rank 0 wrote it in the pass that identified
                ranking = ChannelRanking.load(ranking_path)
        if primary_n is None:
            break
        draws = primary_random_keys(results['settings'], primary_n)
        next_size = next((size for size in rounds if size > len(draws)), None)
        targeted = AttackSetting(TARGETED, primary_n, attack_region=primary_order(attack_regions))
        if next_size is None or not more_draws_needed(per_image, targeted.key, draws, design):
            break
        print_log(f'primary tests undecided after {len(draws)} random draws at N={primary_n}: '
                  f'drawing up to {next_size} (sequential, at most {design.max_draws}).', logger)
        settings += primary_draws(settings, primary_n, next_size)
    _render_missing_overlays(run, settings, ranking)
    results['settings'] = _ordered(results['settings'], settings)
    # Every process computes the same statistics from the same gathered counts; only rank 0
    # writes them.
    results['statistics'], results['tests'] = build_statistics(
        results['settings'], per_image, num_resamples=opts.bootstrap, seed=opts.bootstrap_seed,
        num_channels_total=num_total, design=design,
        groups=groups_of(per_image.images) if groups_of else None,
        ranking_on_scored_images=source['on_scored_images'] is not False)
    if other_ranking is not None and rank == 0:
        # Cheap: recomputed on every run, resumed or not, from the ranking this run used (on
        # rank 0, which wrote ranking.json: the others have no barrier after that write).
        used = ranking if ranking is not None else ChannelRanking.load(ranking_path)
        results['ranking_comparison'] = dict(
            compare_rankings(used, other_ranking),
            names=dict(a='this run', b=osp.basename(opts.compare_ranking.rstrip('/'))))
    if rank == 0:
        overlays = reported_overlays(opts.work_dir, opts.show_dir)
        write_report(opts.work_dir, results, overlays=overlays)
        logger.info('\n' + format_summary_table(results))
        for claim in paper_claims([('this model', results)]):
            logger.info(f'{claim["claim"]}: {claim["verdict"]} ({claim["evidence"]})')
        logger.info(f'report: {osp.join(opts.work_dir, "report.md")}')
    return results


def _ordered(finished: list[dict], settings: list[AttackSetting]) -> list[dict]:
    order = {s.key: i for i, s in enumerate(settings)}
    return sorted(finished, key=lambda s: order.get(s['key'], len(order)))


def _sweep(run: AttackRun, pending, ranking, overlay, previous_per_image,
           identify_anyway: bool = False, progress=True) -> PerImageCounts:
    """One sweep over ``pending``; each pass it finishes is recorded by ``run``."""
    run.ranking, run.previous_per_image = ranking, previous_per_image
    model = run.split.model
    ignore_index = getattr(model.decode_head, 'ignore_index', 255)
    state = run_sweep(run.split, run.dataloader, pending, run.num_total, run.opts.regions,
                      len(run.results['class_names']), ignore_index, ranking=ranking,
                      ablation=run.opts.ablation,
                      identify=ranking is None and (identify_anyway or any(
                          s.mode == TARGETED for s in pending)),
                      overlay=overlay, ranking_info=run.ranking_info(),
                      on_pass_done=run.record_pass, progress=progress)
    if overlay is not None:
        written = _write_overlays(run.opts.show_dir, overlay, ignore_index, model)
        if dist.get_rank() == 0:
            write_overlay_manifest(run.opts.work_dir, run.opts.show_dir, written, overlay)
    return state.per_image.merged(previous_per_image)


def _render_missing_overlays(run: AttackRun, settings, ranking) -> None:
    """Draw the overlays a finished run lacks (killed after results.json, before them)."""
    opts, split = run.opts, run.split
    overlay = _overlay_request(settings, run.num_total, opts.num_overlays) \
        if opts.show_dir else None
    if overlay is None or overlays_up_to_date(opts.work_dir, opts.show_dir, overlay):
        return
    print_log('overlays missing from the work dir: rendering them.', 'current')
    ignore_index = getattr(split.model.decode_head, 'ignore_index', 255)
    shown = [overlay.clean, overlay.targeted, overlay.random]
    run_sweep(split, run.dataloader, shown, run.num_total, opts.regions,
              len(run.results['class_names']), ignore_index, ranking=ranking,
              ablation=opts.ablation, identify=ranking is None, overlay=overlay,
              progress=opts.progress, record_per_image=False)
    written = _write_overlays(opts.show_dir, overlay, ignore_index, split.model)
    if dist.get_rank() == 0:
        write_overlay_manifest(opts.work_dir, opts.show_dir, written, overlay)


def _write_overlays(show_dir: str, overlay: OverlayRequest, ignore_index: int, model) -> None:
    """Gather every process's best images, keep the overall top K, draw them on rank 0."""
    import mmcv
    gathered = dist.all_gather_object(overlay.selector.selected())
    if dist.get_rank() != 0:
        return []
    best = sorted((item for part in gathered for item in part),
                  key=lambda item: (-item[0], item[1]))[:overlay.selector.k]
    os.makedirs(show_dir, exist_ok=True)
    palette = model.dataset_meta['palette']
    written = []
    for score, key, payload in best:
        image = mmcv.imread(payload['img_path'], channel_order='rgb')
        width = payload['gt'].shape[1]
        panel = render_panel(image, payload['gt'], payload['preds'], palette,
                             ignore_index=ignore_index, periphery=(width // 4, 3 * width // 4),
                             tile_width=min(width, OVERLAY_TILE_WIDTH))
        name = osp.splitext(osp.basename(payload['img_path']))[0]
        # never over a file of the user's that has the image's name
        written.append(save_panel(unused_path(osp.join(show_dir, f'{name}.png')), panel))
    print_log(f'{len(best)} overlays in {show_dir}', 'current')
    return written

