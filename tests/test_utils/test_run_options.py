"""The options of every run on one model, declared once (utils.run_options): a tool's
options are filled from its parsed arguments by field name, so these tests check, for each
tool, which fields its arguments do *not* reach (a renamed flag would silently fall back to
a default there) and that each argument's value arrives unchanged."""
from __future__ import annotations

import argparse
from dataclasses import fields

import pytest
from helpers import load_tool

from posattack.attack.experiment import AttackOptions
from posattack.evaluation.consistency import ConsistencyOptions
from posattack.profile.run import ProfileOptions
from posattack.readout.run import ReadoutOptions
from posattack.utils.run_options import ModelRunOptions, options_from_args

# tool -> (options class, fields the tool sets itself (given), fields left at their default)
TOOLS = {
    'attack': (AttackOptions, {'checkpoint', 'work_dir', 'show_dir'}, {'progress'}),
    'depth_profile': (ProfileOptions, {'work_dir'}, {'progress'}),
    'consistency': (ConsistencyOptions, {'max_shifts'}, set()),
    'position_readout': (ReadoutOptions, set(), {'progress'}),
}


def test_arguments_fill_fields_by_name_and_given_values_win():
    args = argparse.Namespace(config='c.py', checkpoint='a.pth', work_dir='w', max_images=3,
                              launcher='none')  # launcher: not a field, ignored
    opts = options_from_args(ModelRunOptions, args, work_dir='elsewhere')
    assert opts == ModelRunOptions(config='c.py', checkpoint='a.pth', work_dir='elsewhere',
                                   max_images=3)


def test_a_given_name_that_is_no_field_is_refused():
    args = argparse.Namespace(config='c.py', checkpoint='a.pth', work_dir='w')
    with pytest.raises(TypeError, match='ModelRunOptions has no field max_shift'):
        options_from_args(ModelRunOptions, args, max_shift=(8,))


@pytest.mark.parametrize('name', sorted(TOOLS))
def test_every_field_is_reached_by_an_argument_or_set_by_the_tool(name):
    cls, given, defaulted = TOOLS[name]
    args = vars(load_tool(name).parse_args(['c.py', 'c.pth']))
    names = {f.name for f in fields(cls)}
    assert issubclass(cls, ModelRunOptions)
    assert names - set(args) - given == defaulted


@pytest.mark.parametrize('name', sorted(TOOLS))
def test_argument_values_arrive_unchanged(name):
    cls, given, _ = TOOLS[name]
    args = load_tool(name).parse_args(['c.py', 'c.pth', '--max-images', '7', '--batch-size',
                                       '2', '--trust-checkpoint', '--cfg-options', 'a=1'])
    opts = options_from_args(cls, args, **{k: f'<{k}>' for k in given})
    for f in fields(cls):
        expected = f'<{f.name}>' if f.name in given else getattr(args, f.name, f.default)
        assert getattr(opts, f.name) == expected, f.name
    assert (opts.max_images, opts.batch_size, opts.trust_checkpoint, opts.cfg_options) == \
        (7, 2, True, {'a': 1})
