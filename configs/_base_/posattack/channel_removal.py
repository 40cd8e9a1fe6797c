# Remove position-encoding channels while mmseg validates/tests: add this file to `_base_`
# of any MMSeg config and run mmseg's own tools/test.py.
#
#   _base_ = ['./my_deeplabv3_config.py', '<posattack>/configs/_base_/posattack/channel_removal.py']
#
# then point the hook at a ranking made by tools/identify.py:
#
#   python tools/test.py my_config.py ckpt.pth \
#       --cfg-options custom_hooks.0.ranking=work_dirs/ranking.json custom_hooks.0.num_channels=50
#
# Overriding: `custom_hooks` is a list, and MMEngine replaces lists wholesale when a child
# config assigns them. Change single fields with `custom_hooks.0.<field>=...` (on the command
# line or in `cfg_options`), or assign the whole list again in your config. Two `_base_` files
# may not both define `custom_hooks` (or `custom_imports`): MMEngine rejects duplicate keys among
# bases, so if yours has its own, write the complete list in the child config instead.
#
# Fields (see posattack.hooks.ChannelRemovalHook):
#   layer: 'backbone:3' style name; None = the tensor the decode head consumes.
#   mode: 'targeted' (top of a ranking), 'random' (drawn with seed), 'explicit' (channels=[...]).
#   num_channels / fraction: how many to remove; give exactly one (set the other to None).
#   region: which ranking order: 'overall', 'left', 'right', 'top', 'bottom'.
#   ablation: 'zero', or 'mean' (each channel's mean over the first mean_num_images images of
#             the loop's dataloader, computed before each val/test epoch: one extra pass).
#   apply_in: phases to remove channels in: any of 'val', 'test', 'train'.
custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='ChannelRemovalHook',
        layer=None,
        ranking='ranking.json',
        region='overall',
        mode='targeted',
        num_channels=100,
        fraction=None,
        channels=None,
        seed=0,
        ablation='zero',
        mean_num_images=100,
        apply_in=('val', 'test')),
]
