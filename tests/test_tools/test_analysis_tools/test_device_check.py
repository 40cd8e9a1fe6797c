"""tools/analysis_tools/device_check.py: refuses a device that is not here in one line, passes
on the CPU (the same code a GPU run takes), and fails when batched labels differ from one
setting at a time."""
from __future__ import annotations

import pytest
import torch
from helpers import load_tool

device_check = load_tool('device_check')
QUICK = ['--device', 'cpu', '--arch', 'segformer_b0_whole', '--size', '64', '128',
         '--repeat', '1']


def test_no_cuda_is_one_line_naming_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert device_check.main(['--device', 'cuda']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no CUDA device here' in err and '--device cpu' in err


def test_a_device_it_does_not_know_is_refused(capsys):
    assert device_check.main(['--device', 'banana']) == 2
    assert capsys.readouterr().err.startswith("error: --device 'banana' is not a device")


@pytest.mark.slow  # builds SegFormer-B0 twice and sweeps: about 5 s
def test_passes_on_the_cpu_and_fails_when_a_setting_is_mixed_up(monkeypatch, capsys):
    assert device_check.main(QUICK) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith('| SegFormer-B0 (whole) |')][0]
    assert '| yes | yes | 100.0000% |' in row  # the CPU against itself: every pixel
    assert out.rstrip().endswith('every exact check passed')

    from posattack.attack.batched_settings import BatchedSettings
    predict_many = BatchedSettings.predict_many

    def swapped(self, *args, **kwargs):  # the last two settings' labels swapped
        labels = predict_many(self, *args, **kwargs)
        return labels[:-2] + [labels[-1], labels[-2]]

    monkeypatch.setattr(BatchedSettings, 'predict_many', swapped)
    assert device_check.main(QUICK) == 1
    out = capsys.readouterr().out
    assert '| NO |' in out and 'FAILED: batched settings differ' in out
