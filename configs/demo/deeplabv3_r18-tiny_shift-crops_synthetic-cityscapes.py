# The control for AugShift: the same crop pairs as the AugShift demo config (two 120x248
# crops per image, |dy|, |dx| <= 8), trained on the decode loss alone. Any gain of AugShift
# over this config is the loss's, not the shifted crops'.
_base_ = ['./deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py']

model = dict(latent_weight=0.0, dense_weight=0.0)
