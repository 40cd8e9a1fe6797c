"""Models: build a segmentor from a config and load its checkpoint (:mod:`.builder`), the
paper authors' DeepLabv3 head and checkpoint converter (:mod:`.authors_deeplab_head`,
:mod:`.authors_checkpoint`), a ResNetV1c with a wider last stage for the seed-robustness
study (:mod:`.wide_last_stage_resnet`), and an anti-aliased (BlurPool) ResNetV1c, the
standard shift-invariance defence the AugShift table compares with (:mod:`.antialiased_resnet`)."""
