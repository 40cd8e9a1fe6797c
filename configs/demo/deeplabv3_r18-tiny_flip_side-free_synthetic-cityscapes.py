# The embedded default trained as the paper's Cityscapes model was: with random horizontal
# flips, on scenes whose classes do not depend on the side of the street.
#
#   python tools/dataset_converters/make_synthetic_cityscapes.py \
#       data/synthetic_cityscapes_side_free --side-free
#   python tools/train.py configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py
#
# In the default scenes sidewalk/terrain and building/wall are told apart only by the side of
# the image, so a flip would make them unlearnable; side-free scenes draw each side's class
# at random and give each class its own look (posattack.data.synthetic, side_free=True). A flip is
# then label-preserving, as on real Cityscapes, and the network has no built-in left/right
# cue to learn: what is left of the position effect is what zero padding and the vertical
# layout (sky and road still share one look) put there.
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py']

data_root = 'data/synthetic_cityscapes_side_free'
image_scale = (256, 128)
crop_size = (128, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
