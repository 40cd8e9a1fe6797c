# GAPNet closer to the paper's scale: ResNetV1c-18 at full width (channels 64/128/256/512, as
# the authors' ResNet-18) and 32x32 crops (the size of their CIFAR-10 images) in 32x32 cells,
# so a 3x3 canvas is 96 pixels. Everything else (data, batch 32, 400 iterations of AdamW) is
# the 1/4-width config's; each iteration costs many times more (see the runs' seconds in
# make tables-probes' results.json files).
#
#   python tools/probe.py table \
#       --config configs/probes/gapnet_r18-w64-p32_grid3-location_synthetic.py \
#       --paddings zero --grid-sizes 3 --tasks location --gapnet-head-kernel 3 --permutation batch
_base_ = './gapnet_r18-w16_grid3-location_synthetic.py'

patch_size = 32
model = dict(backbone=dict(base_channels=64, stem_channels=64))
train_dataloader = dict(dataset=dict(patch_size=patch_size))
test_dataloader = dict(dataset=dict(patch_size=patch_size))
