"""The position attack: one backbone pass per batch, every removal setting evaluated on it.

* :mod:`.settings`: clean / targeted top-N / random N per seed;
* :mod:`.feature_split`, :mod:`.linear_shortcut`, :mod:`.prefix_replay`: run a segmentor in
  two halves around the attacked tensor, and cheaply;
* :mod:`.sweep`: the passes over the data (identification through :mod:`posattack.identify`);
* :mod:`.experiment`: the whole attack as one call (what tools/attack.py runs), with its
  checks (:mod:`.checks`, :mod:`.non_finite`, :mod:`.dataset_errors`), its work dir
  (:mod:`.work_dir`, :mod:`posattack.utils.work_dir_lock`, :mod:`.run_fingerprint`) and
  :mod:`.multi_model` (several trained models, pooled);
* :mod:`.dataloader`: the one dataloader builder (a config's split, test pipeline).
"""
