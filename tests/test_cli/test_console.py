"""The `posattack` command (posattack/cli/main.py), the tools/ scripts that call the same
code, `posattack::` config paths, and the registry node MMEngine uses for that scope."""
from __future__ import annotations

import os.path as osp
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, load_tool

from posattack.cli import main as console
from posattack.utils.config_scope import packaged_config

# subcommand -> its tools/ script in the clone
SCRIPTS = {'make-synthetic': 'make_synthetic_cityscapes', 'train': 'train',
           'identify': 'identify', 'attack': 'attack', 'profile': 'depth_profile',
           'consistency': 'consistency', 'convert-authors': 'convert_authors_checkpoint'}


def test_help_lists_every_subcommand(capsys):
    assert console.run(['--help']) == 0
    out = capsys.readouterr().out
    for name in SCRIPTS:
        assert f'\n  {name} ' in out
    assert set(console.COMMANDS) == set(SCRIPTS)


def test_no_subcommand_is_a_usage_error(capsys):
    assert console.run([]) == 2
    assert 'usage: posattack SUBCOMMAND' in capsys.readouterr().err


def test_an_unknown_subcommand_is_one_line_naming_the_choices(capsys):
    assert console.run(['atack', 'c.py']) == 2
    err = capsys.readouterr().err
    assert err == ("error: unknown subcommand 'atack': choose from make-synthetic, train, "
                   'identify, attack, profile, consistency, convert-authors.\n')


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_each_subcommand_is_its_tools_script(name):
    """Same parser, same run: the script's names are the package's objects."""
    module = console._module(name)
    tool = load_tool(SCRIPTS[name])
    assert tool.parse_args is module.parse_args
    assert tool.main is module.main


def test_a_subcommand_parses_as_its_script_and_names_itself(capsys):
    with pytest.raises(SystemExit) as stop:
        console.run(['attack', '--help'])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage: posattack attack [-h]')
    assert '--vis-backend NAME' in out
    assert sys.argv[0] != 'posattack attack'  # restored after the subcommand


def test_the_bad_input_of_a_subcommand_is_its_own_one_line(tmp_path, capsys):
    missing = tmp_path / 'nothing.py'
    assert console.run(['identify', str(missing), 'c.pth']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: Config file not found')


def test_a_posattack_path_names_the_clones_config():
    from posattack.models.builder import config_file_path, load_config
    name = 'demo/deeplabv3_r18-tiny_synthetic-cityscapes.py'
    assert packaged_config(name) == osp.join(REPO_ROOT, 'configs', name)
    assert config_file_path(f'posattack::{name}') == osp.join(REPO_ROOT, 'configs', name)
    assert load_config(f'posattack::{name}').model.backbone.type == 'ResNetV1c'


def test_the_posattack_scope_builds_from_mmsegs_registries():
    """What MMEngine does with a dict that a `posattack::` base gave ``_scope_='posattack'``:
    mmseg's types and posattack's dotted ones both build, without a warning."""
    import warnings

    from mmengine.registry import METRICS, VISUALIZERS, init_default_scope
    from mmseg.registry import HOOKS

    import posattack
    init_default_scope('mmseg')
    visualizer = VISUALIZERS.build(dict(type='SegLocalVisualizer', _scope_='posattack',
                                        name='test_posattack_scope'))
    assert type(visualizer).__name__ == 'SegLocalVisualizer'
    with warnings.catch_warnings():
        warnings.simplefilter('error', DeprecationWarning)
        metric = METRICS.build(dict(type='posattack.RegionIoUMetric', _scope_='posattack'))
        hook = HOOKS.build(dict(type='posattack.ChannelRemovalHook', _scope_='posattack',
                                mode='random', num_channels=3))
    assert isinstance(metric, posattack.RegionIoUMetric)
    assert isinstance(hook, posattack.ChannelRemovalHook)


@pytest.mark.slow  # a process of its own
def test_python_dash_m_posattack_is_the_command():
    done = subprocess.run([sys.executable, '-m', 'posattack', 'bogus'], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: unknown subcommand 'bogus': choose from make-synthetic")
