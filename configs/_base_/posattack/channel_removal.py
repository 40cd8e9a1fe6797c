# Remove position-encoding channels while mmseg validates/tests: add this file to `_base_`
# of any MMSeg config and run mmseg's own tools/test.py.
#
#   _base_ = ['./my_deeplabv3_config.py', 'posattack::_base_/posattack/channel_removal.py']
#
# then point the hook at a ranking made by tools/identify.py:
#
#   python tools/test.py my_config.py ckpt.pth \
#       --cfg-options custom_hooks.0.ranking=work_dirs/ranking.json custom_hooks.0.num_channels=50
#
# The hook's type is posattack's top-level name, `posattack.ChannelRemovalHook`, which
# MMEngine's registry imports by itself and which stays put when modules move (and
# importing posattack registers its metrics and the checkpoint allowlist too). So this file
# sets no `custom_imports`: MMEngine refuses a key defined by two `_base_` files, and many
# configs (the demo ones included) already have their own `custom_imports`. Writing
# `custom_imports = dict(imports=['posattack'])` and `type='ChannelRemovalHook'` works as well.
#
# Overriding: `custom_hooks` is a list, and MMEngine replaces lists wholesale when a child
# config assigns them. Change single fields with `custom_hooks.0.<field>=...` (on the command
# line or in `cfg_options`), or assign the whole list again in your config. If your config
# already defines `custom_hooks`, do not list it beside this file in `_base_` (duplicate key):
# copy the dict below into your own list instead.
#
# Fields (see posattack.channels.hook.ChannelRemovalHook):
#   layer: 'backbone:3' style name; None = the tensor the decode head consumes.
#   mode: 'targeted' (top of a ranking), 'random' (drawn with seed), 'explicit' (channels=[...]).
#   num_channels / fraction: how many to remove; give exactly one (set the other to None).
#   region: which ranking order: 'overall', 'left', 'right', 'top', 'bottom'.
#   ablation: 'zero', 'mean' (each channel's mean over the first mean_num_images images of
#             the loop's dataloader, computed before each val/test epoch: one extra pass), or
#             'gaussian_noise' (noise at each channel's std, from the same extra pass); see
#             posattack/channels/ablations.py.
#   apply_in: phases to remove channels in: any of 'val', 'test', 'train'.
#   ranking_format: 'posattack' (tools/identify.py's JSON) or 'authors' (the paper's release:
#                   ranking=<directory of their three JSON files>).
custom_hooks = [
    dict(
        type='posattack.ChannelRemovalHook',
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
        apply_in=('val', 'test'),
        ranking_format='posattack'),
]
