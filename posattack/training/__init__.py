"""Training against position: AugShift (two shifted crops of each image, pulled together).

* :mod:`.shift_crops`: the bookkeeping of two crops at a known offset (AugShiftPair,
  ShiftConsistencyPairs), shared with the shift-consistency evaluation;
* :mod:`.aug_shift`: AugShiftEncoderDecoder and its data preprocessor.
"""
from __future__ import annotations

from .aug_shift import AugShiftDataPreProcessor, AugShiftEncoderDecoder
from .shift_crops import AugShiftPair, ShiftConsistencyPairs

__all__ = ['AugShiftDataPreProcessor', 'AugShiftEncoderDecoder', 'AugShiftPair',
           'ShiftConsistencyPairs']
