"""Data: synthetic street scenes in the Cityscapes layout (:mod:`.synthetic`) and the official
Cityscapes label table (:mod:`.cityscapes_labels`)."""
