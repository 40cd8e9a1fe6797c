"""The options every model-running tool shares (utils.cli.add_run_arguments) read and fail
the same way in each tool: a --cfg-options pair without '=' is a usage error naming the
fix (depth_profile.py used mmengine's DictAction, which raised a ValueError deep inside),
and torch.distributed.launch's --local_rank is accepted (identify.py refused it)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO_ROOT, load_tool

TOOLS = ('attack', 'identify', 'consistency', 'depth_profile', 'position_readout')


@pytest.mark.parametrize('name', TOOLS)
def test_bad_cfg_options_pair_is_a_usage_error(name, capsys):
    tool = load_tool(name)
    with pytest.raises(SystemExit) as exit_info:
        tool.parse_args(['c.py', 'c.pth', '--cfg-options', 'model.x'])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'model.x' is not KEY=VALUE" in last and '--cfg-options test_dataloader' in last


@pytest.mark.parametrize('name', TOOLS)
def test_run_options_parse_alike(name):
    tool = load_tool(name)
    args = tool.parse_args(['c.py', 'c.pth', '--cfg-options', 'a.b=3', 'c=[1,2]',
                            '--launcher', 'pytorch', '--local_rank', '1', '--trust-checkpoint'])
    assert args.cfg_options == {'a.b': 3, 'c': [1, 2]}  # values parsed as mmseg's tools do
    assert (args.launcher, args.local_rank, args.trust_checkpoint) == ('pytorch', 1, True)
    defaults = tool.parse_args(['c.py', 'c.pth'])
    assert (defaults.cfg_options, defaults.launcher, defaults.local_rank,
            defaults.trust_checkpoint) == (None, 'none', 0, False)


@pytest.mark.slow   # spawns a python that imports torch and mmseg
def test_identify_bad_input_is_one_line_like_the_other_tools(tmp_path):
    result = subprocess.run([sys.executable, 'tools/identify.py', str(tmp_path / 'none.py'),
                             str(tmp_path / 'none.pth')], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and result.stderr.startswith('error: ')
