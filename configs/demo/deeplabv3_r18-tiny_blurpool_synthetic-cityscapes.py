# The standard defence that the paper's Table 2 sets AugShift against: the embedded default
# with an anti-aliased backbone (BlurPool before every subsampling, Zhang, ICML 2019:
# posattack.models.antialiased_resnet), everything else unchanged (data, plain training on
# whole images, 600 iterations, the same initial weights for a training seed). Its 128x256
# input is subsampled three times (stem conv, max-pool, layer2); the max-pool and layer2's
# strided conv and shortcut are blurred with a 4x4 binomial filter, reflect-padded; the
# stem's first conv keeps its stride, as in Zhang's models.
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py']

model = dict(backbone=dict(type='AntialiasedResNetV1c', filter_size=4))
