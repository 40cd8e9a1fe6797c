# AugShift (Islam et al., ICCV 2021) for any EncoderDecoder config: train on two crops of
# each image at a random offset, with a loss between their pooled latents ("latent") and
# between their outputs where both crops see ("dense"). Inference is unchanged.
#
# MMEngine refuses a key that two `_base_` files both define and replaces lists wholesale,
# so this file cannot edit your `model` or train pipeline by itself; it defines the two
# pieces under names of their own, and your config applies them in three lines:
#
#   _base_ = ['./my_deeplabv3_config.py', 'posattack::_base_/posattack/aug_shift.py']
#   model = _base_.aug_shift_model  # merged into your model: its type and the weights
#   train_dataloader = dict(dataset=dict(
#       pipeline=_base_.train_dataloader.dataset.pipeline + [_base_.aug_shift_pair]))
#
# configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py is a worked example.
# Types are posattack's top-level names (`posattack.AugShiftEncoderDecoder`), which MMEngine's
# registry imports by itself and which stay put when modules move.
aug_shift_model = dict(
    type='posattack.AugShiftEncoderDecoder',
    latent_weight=1.0,  # pooled-latent distance (the paper's AugShift loss)
    dense_weight=1.0,  # symmetric KL of the two outputs on the crops' overlap
    latent_index=-1,  # the last extracted feature map is "the latent"
    latent_distance='mse')  # or 'cosine'
# appended after PackSegInputs: crops are (H - s) x (W - s), corners in [0, s]^2
aug_shift_pair = dict(type='posattack.AugShiftPair', max_shift=8)
