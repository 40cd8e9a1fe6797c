"""posattack.attack.run_fingerprint's refusal helpers, by hand: which keys differ, and the one
line a refused --resume prints (hashes said in words, other values shown both ways)."""
from __future__ import annotations

from posattack.attack.run_fingerprint import differing_keys, resume_refusal


def test_differing_keys_by_hand():
    recorded = dict(layer='backbone:3', num_images=3, regions=['paper'])
    wanted = dict(layer='backbone:3', num_images=2, regions=['paper'], ablation='zero')
    # a key the record lacks differs; one only the record has is not asked about
    assert differing_keys(recorded, wanted) == ['num_images', 'ablation']
    assert differing_keys(dict(recorded, extra=1), recorded) == []


def test_resume_refusal_by_hand():
    recorded = dict(num_images=3, config_sha256='a' * 64)
    wanted = dict(num_images=2, config_sha256='b' * 64)
    line = resume_refusal('w/results.json', recorded, wanted, ['num_images', 'config_sha256'],
                          'experiment')
    assert line == (
        '--resume refused: w/results.json comes from a different experiment (num_images: 3 '
        'there vs 2 now, config_sha256: the config contents differ (model or test data '
        'settings, --cfg-options included)). Use another --work-dir, or drop --resume to '
        'start over.')
