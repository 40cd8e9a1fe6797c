"""posattack.utils.config_values: the reduction both --resume and --keep-finished compare."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from mmengine.config import Config

from posattack.attack.run_fingerprint import config_sha256
from posattack.training.kept_model import training_parts
from posattack.utils.config_values import (LOADER_ONLY_KEYS, plain_config_value,
                                           without_loader_only_keys)


class _Transform:
    pass


def test_plain_values_by_hand():
    value = OrderedDict(a=(1, 2.5, None), b={3: 'x'}, c=_Transform, d=True, e=_Transform())
    plain = plain_config_value(value)
    assert plain['a'] == [1, 2.5, None]
    assert plain['b'] == {'3': 'x'}  # JSON keys are strings
    assert plain['c'] == f'{__name__}._Transform'
    assert plain['d'] is True
    assert plain['e'].startswith('<') and '_Transform object' in plain['e']  # its repr
    assert type(plain) is dict


def test_a_config_written_out_and_read_back_compares_equal():
    cfg = Config(dict(model=dict(type='EncoderDecoder', crop=(512, 1024)),
                      train_dataloader=dict(batch_size=2, num_workers=4,
                                            dataset=dict(pipeline=[dict(type='Resize',
                                                                        scale=(2048, 1024))]))))
    back = Config.fromstring(cfg.pretty_text, '.py')
    assert plain_config_value(back.to_dict()) == plain_config_value(cfg.to_dict())


def test_loader_only_keys_dropped_from_a_copy():
    loader = dict(batch_size=1, num_workers=8, persistent_workers=True, pin_memory=True,
                  prefetch_factor=2, sampler=dict(type='DefaultSampler', shuffle=False))
    kept = without_loader_only_keys(loader)
    assert kept == dict(batch_size=1, sampler=dict(type='DefaultSampler', shuffle=False))
    assert set(LOADER_ONLY_KEYS) <= set(loader)  # the argument is left as it was
    assert without_loader_only_keys(None) is None


def test_config_sha256_is_the_hash_of_the_plain_parts_by_hand():
    # the hash work dirs recorded before this module existed: a change here would refuse
    # every kept --resume
    cfg = Config(dict(model=dict(type='M', size=(4, 8)), default_scope='mmseg',
                      test_dataloader=dict(batch_size=1, num_workers=2,
                                           dataset=dict(data_root='d'))))
    expected = json.dumps(dict(model=dict(type='M', size=[4, 8]),
                               test_dataloader=dict(batch_size=1, dataset=dict(data_root='d')),
                               default_scope='mmseg'), sort_keys=True)
    assert config_sha256(cfg) == hashlib.sha256(expected.encode('utf-8')).hexdigest()


def test_workers_do_not_change_the_training_parts():
    base = dict(model=dict(type='M'), train_dataloader=dict(batch_size=2, num_workers=0),
                randomness=dict(seed=0))
    more_workers = dict(base, train_dataloader=dict(batch_size=2, num_workers=8))
    assert training_parts(Config(base)) == training_parts(Config(more_workers))
    assert training_parts(Config(base))['train_dataloader'] == {'batch_size': 2}
