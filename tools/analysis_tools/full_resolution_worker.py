"""The worker of tools/analysis_tools/benchmark_full_resolution.py: the attack's phases on
full-resolution scenes in this process, each phase's wall and CPU time and the peak memory.
Run in a subprocess of its own per (architecture, images), so each peak is that run's."""
from __future__ import annotations

import os
import os.path as osp
import resource
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = osp.join(REPO_ROOT, 'configs', 'paper')
ARCHITECTURES = {
    'deeplabv3_r50': dict(config='deeplabv3_r50-d8_cityscapes-512x1024_posattack.py',
                          label='DeepLabv3-R50-D8 (whole)', options={}),
    'pspnet_r50': dict(config='pspnet_r50-d8_cityscapes-512x1024_posattack.py',
                       label='PSPNet-R50-D8 (whole)', options={}),
    'segformer_b0_whole': dict(config='segformer_mit-b0_cityscapes-1024x1024_posattack.py',
                               label='SegFormer-B0 (whole)', options={}),
    'segformer_b0_slide': dict(config='segformer_mit-b0_cityscapes-1024x1024_posattack.py',
                               label='SegFormer-B0 (slide)',
                               options={'model.test_cfg.mode': 'slide'}),
}
PHASES = ('build', 'identification', 'clean pass', 'targeted (per setting)',
          'random (per setting)', 'statistics', 'report', 'overlays')
SIZE = (1024, 2048)


class _Phases:
    """Wall and CPU seconds per phase, in this process."""

    def __init__(self):
        self.seconds = {}

    def run(self, name, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        self.seconds[name] = dict(wall=time.perf_counter() - wall,
                                  cpu=time.process_time() - cpu)
        return result


def _rss_mb() -> float:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def worker(arch: str, num_images: int, data_root: str, per_kind: int, out_dir: str,
           size=SIZE) -> dict:
    import torch

    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.run_progress import RunProgress
    from posattack.attack.settings import AttackSetting
    from posattack.attack.sweep import run_sweep
    from posattack.channels.layers import default_layer, resolve_layer
    from posattack.data.dataloader import build_test_dataloader
    from posattack.evaluation.metric import summarize_confusion
    from posattack.evaluation.regions import validate_region_specs
    from posattack.identify import identify_channels
    from posattack.models.builder import load_segmentor
    from posattack.report.markdown import write_report
    from posattack.report.overlay import render_panel, save_panel
    from posattack.report.significance import build_statistics
    spec = ARCHITECTURES[arch]
    options = dict(spec['options'], **{
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.pipeline.1.scale': (size[1], size[0]),
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False})
    phases = _Phases()
    torch.manual_seed(0)
    model, cfg = phases.run('build', load_segmentor, osp.join(PAPER, spec['config']), None,
                            cfg_options=options)
    rss_built = _rss_mb()
    layer = default_layer(model)
    split = FeatureSplit(model, resolve_layer(model, layer))
    loader = build_test_dataloader(cfg, 1, num_images)
    class_names = list(model.dataset_meta['classes'])
    regions = ['paper', dict(type='border', bands=4)]
    ranking = phases.run('identification', identify_channels, model, loader, layer,
                         progress=False)
    num_total = ranking.num_channels
    clean = AttackSetting('clean')
    counts = [max(1, round(f * num_total)) for f in (0.05, 0.1)]
    kinds = {
        'targeted (per setting)': [AttackSetting('targeted', counts[i % 2],
                                                 attack_region='overall')
                                   for i in range(per_kind)],
        'random (per setting)': [AttackSetting('random', counts[0], seed=seed)
                                 for seed in range(per_kind)]}

    estimates = []   # (the first batch's projection, the measured wall time) per sweep

    def sweep(settings):
        tracker = RunProgress(num_images, enabled=False)
        start = time.perf_counter()
        state = run_sweep(split, loader, settings, num_total, regions, len(class_names),
                          ranking=ranking, progress=tracker)
        estimates.append((tracker.estimate_s, time.perf_counter() - start))
        return state

    state = phases.run('clean pass', sweep, [clean])
    confusions, per_image = dict(state.confusions), state.per_image
    for name, settings in kinds.items():
        kind_state = phases.run(name, sweep, [clean] + settings)
        for clock in ('wall', 'cpu'):  # one more setting: minus the clean pass, per setting
            phases.seconds[name][clock] = (phases.seconds[name][clock]
                                           - phases.seconds['clean pass'][clock]) / len(settings)
        confusions.update(kind_state.confusions)
        per_image = kind_state.per_image.merged(per_image)
    all_settings = [clean] + [s for settings in kinds.values() for s in settings]
    region_names = validate_region_specs(regions)
    results = dict(config=spec['config'], checkpoint='random init', layer=layer,
                   num_images=num_images, num_channels_total=num_total,
                   class_names=class_names, regions=region_names, settings=[])
    for setting in all_settings:
        flat, per_class = summarize_confusion(confusions[setting.key], region_names,
                                              class_names)
        results['settings'].append(dict(setting.to_dict(), key=setting.key, metrics=flat,
                                         per_class=per_class))
    results['statistics'], results['tests'] = phases.run(
        'statistics', build_statistics, results['settings'], per_image,
        num_channels_total=num_total)
    phases.run('report', write_report, osp.join(out_dir, 'report'), results)

    def predictions():
        """What the sweep hands the overlay writer: per image, three settings' labels."""
        shown = [clean, kinds['targeted (per setting)'][0], kinds['random (per setting)'][0]]
        panels = []
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            with torch.no_grad():
                feats = split.prefix(inputs) if split.fast else None
                preds = {}
                for setting, channels in zip(shown, [[], ranking.top('overall', counts[0]),
                                                     list(range(counts[0]))]):
                    labels = split.predict_from(feats, inputs, samples, channels) \
                        if split.fast else split.predict_full(inputs, samples, channels)
                    preds[setting.label] = labels[0].cpu().numpy()
            panels.append((samples[0].img_path, samples[0].gt_sem_seg.data[0].cpu().numpy(),
                           preds))
        return panels

    def overlays(panels):
        """What tools/attack.py does with them: read the image, render, write the panel."""
        import mmcv
        palette = model.dataset_meta['palette']
        for img_path, gt, preds in panels:
            image = mmcv.imread(img_path, channel_order='rgb')
            width = gt.shape[1]
            panel = render_panel(image, gt, preds, palette,
                                 periphery=(width // 4, 3 * width // 4),
                                 tile_width=min(width, 512))
            save_panel(osp.join(out_dir, osp.basename(img_path)), panel)

    # the labels come from the sweep in a real run (not timed here); rendering is
    phases.run('overlays', overlays, predictions())
    # ru_maxrss is in kilobytes on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(arch=arch, images=num_images, fast_path=split.fast, channels=num_total,
                settings_per_kind=per_kind, size=list(size), overlay_phase='render',
                rss_built_mb=rss_built,
                peak_rss_mb=peak,
                seconds=phases.seconds, threads=torch.get_num_threads(), estimates=estimates,
                load_average=os.getloadavg())
