# The demo model trained with AugShift: same data, schedule and seed as the demo config, but
# each training image becomes two 120x248 crops at a random offset (|dy|, |dx| <= 8) and the
# loss adds the pooled-latent distance and the dense agreement of the two crops.
#
#   python tools/train.py configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py
#
# Tests run on whole 128x256 images, as for the demo model.
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py', '../_base_/posattack/aug_shift.py']

model = _base_.aug_shift_model
# At the fragment's weights (1, 1) the two terms were about 0.05% (latent) and 0.5% (dense)
# of the decode loss over the first 30 iterations here, too little to matter; these weights
# bring each to the order of 5-10% of it.
model.update(latent_weight=100.0, dense_weight=10.0)
# The crops all have one size: no padding up to the 128x256 crop_size of the base config
# (zero bands at the bottom and right that test images never have). mmseg's training batch
# needs one of size / size_divisor: size_divisor=1 stacks the crops as they are.
model.update(data_preprocessor=dict(size=None, size_divisor=1))
train_dataloader = dict(dataset=dict(
    pipeline=_base_.train_dataloader.dataset.pipeline + [_base_.aug_shift_pair]))
