"""Models: build a segmentor from a config and load its checkpoint (:mod:`.builder`), and the
paper authors' DeepLabv3 head and checkpoint converter (:mod:`.authors_deeplab_head`,
:mod:`.authors_checkpoint`)."""
