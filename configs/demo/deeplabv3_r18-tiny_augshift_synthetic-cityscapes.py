# The demo model trained with AugShift: same data, schedule and seed as the demo config, but
# each training image becomes two 120x248 crops at a random offset (|dy|, |dx| <= 8) and the
# loss adds the pooled-latent distance and the dense agreement of the two crops.
#
#   python tools/train.py configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py
#
# Tests run on whole 128x256 images, as for the demo model.
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py', '../_base_/posattack/aug_shift.py']

# The fragment's weights (latent 1, dense 1). What they and other weights do to accuracy,
# shift consistency and position dependence on the demo model, over 3 training seeds:
# docs/tables/aug_shift.md (make tables-aug-shift).
model = _base_.aug_shift_model
# The crops all have one size: no padding up to the 128x256 crop_size of the base config
# (zero bands at the bottom and right that test images never have). mmseg's training batch
# needs one of size / size_divisor: size_divisor=1 stacks the crops as they are.
model.update(data_preprocessor=dict(size=None, size_divisor=1))
train_dataloader = dict(dataset=dict(
    pipeline=_base_.train_dataloader.dataset.pipeline + [_base_.aug_shift_pair]))
