# The embedded default trained twice as long (1200 iterations instead of 600), one of the
# settings of the seed-robustness study (docs/seed_robustness.md): does a model closer to
# convergence carry the position effect more consistently across training seeds?
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py']

max_iters = 1200
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=30, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=30, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
