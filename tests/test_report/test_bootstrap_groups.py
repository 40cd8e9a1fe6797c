"""The cluster bootstrap: whole groups of images (Cityscapes cities) drawn with replacement."""
from __future__ import annotations

import numpy as np
import pytest

from posattack.report.bootstrap_groups import bootstrap_weights, image_groups
from posattack.report.per_image import resample_weights

NAMES = ['frankfurt_000000_000294_leftImg8bit.png', 'frankfurt_000001_007973_leftImg8bit.png',
         'lindau_000001_000019_leftImg8bit.png', 'munster_000005_000019_leftImg8bit.png']


def test_city_groups_from_cityscapes_file_names():
    assert image_groups(['/data/val/frankfurt/' + NAMES[0]] + NAMES[1:], 'city') == [
        'frankfurt', 'frankfurt', 'lindau', 'munster']
    assert image_groups(NAMES, r'^[a-z]+_0+(\d)') == ['0', '1', '1', '5']
    assert image_groups(NAMES, None) is None


@pytest.mark.parametrize('spec,message', [('(', 'not a regular expression'),
                                          ('^[a-z]+', 'exactly one capture group'),
                                          ('^(x)', "does not match image 'frankfurt_000000")])
def test_bad_group_patterns_are_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        image_groups(NAMES, spec)


def test_images_of_one_group_move_together_and_groups_are_resampled():
    groups = ['a', 'a', 'a', 'b', 'c']
    weights = bootstrap_weights(5, 400, seed=3, groups=groups)
    # the three images of group a always share one multiplicity
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    # per resample the group multiplicities sum to the number of groups (3), as a multinomial
    per_group = weights[:, [0, 3, 4]]
    assert (per_group.sum(axis=1) == 3).all()
    # and they are the iid resampler's draws over the 3 groups, with the same seed
    assert np.array_equal(per_group, resample_weights(3, 400, 3))
    # no groups: the images themselves
    assert np.array_equal(bootstrap_weights(5, 10, 1), resample_weights(5, 10, 1))
    with pytest.raises(ValueError, match='2 group labels for 5 images'):
        bootstrap_weights(5, 10, 1, groups=['a', 'b'])
