# PermuteNet (Islam et al., ICCV 2021, Table 1): the GAPNet config's backbone and data, but the
# pooled channels are shuffled (a fresh permutation per image at every forward, in training and
# test) before a linear layer, so channel identity, and with it position, is lost.
#
#   python tools/probe.py train configs/probes/permutenet_r18-w16_grid3-location_synthetic.py
_base_ = './gapnet_r18-w16_grid3-location_synthetic.py'

model = dict(type='PermuteNet', shuffle_channels=True)
