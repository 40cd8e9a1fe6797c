"""ChannelRanking: orders and scores, JSON in and out, the authors' release, clear errors."""
from __future__ import annotations

import json
import os
import os.path as osp

import pytest
from helpers import AUTHORS_RANKINGS, REPO_ROOT

import posattack.channels.ranking as ranking_module
from posattack.channels.ranking import (FORMAT_TAG, ChannelRanking, order_by_score,
                                        resolve_channel_count)


def make_ranking():
    """Four channels with scores chosen by hand; the orders follow from them."""
    horizontal = [0.5, -0.25, 0.0, 0.25]   # left: 0, 3, 2, 1; right: 1, 2, 3, 0
    overall = [0.5, 0.75, 0.0, 0.25]       # overall: 1, 0, 3, 2
    return ChannelRanking(
        layer='backbone:3', num_channels=4, method='flip_difference', num_images=2,
        orders={'overall': [1, 0, 3, 2], 'left': [0, 3, 2, 1], 'right': [1, 2, 3, 0]},
        scores={'overall': overall, 'horizontal': horizontal},
        order_rules={k: v for k, v in ranking_module.FLIP_DIFFERENCE_RULES.items()
                     if k in ('overall', 'left', 'right')},
        model={'tensor_shape': [4, 2, 2]})


def test_order_by_score_breaks_ties_by_channel_id():
    assert order_by_score([0.1, 0.5, 0.5, -1.0]) == [1, 2, 0, 3]
    assert order_by_score([0.1, 0.5, 0.5, -1.0], descending=False) == [3, 0, 1, 2]


def test_resolve_channel_count():
    assert resolve_channel_count(2048, num_channels=100) == 100
    assert resolve_channel_count(2048, num_channels=0) == 0
    assert resolve_channel_count(2048, fraction=0.05) == 102       # round(102.4)
    assert resolve_channel_count(2048, fraction=1.0) == 2048
    assert resolve_channel_count(10, fraction=0.27) == 3           # rounded, not truncated
    assert resolve_channel_count(10, fraction=0.001) == 1          # at least one
    with pytest.raises(ValueError, match=r'0\.\.2048'):
        resolve_channel_count(2048, num_channels=2049)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r'\(0, 1\]'):
            resolve_channel_count(2048, fraction=bad)
    with pytest.raises(ValueError, match='exactly one'):
        resolve_channel_count(2048, num_channels=3, fraction=0.1)
    with pytest.raises(TypeError, match='integer'):
        resolve_channel_count(2048, num_channels=2.5)


def test_top_and_regions():
    ranking = make_ranking()
    assert ranking.regions == ['overall', 'left', 'right']
    assert ranking.top('overall', num_channels=2) == [1, 0]
    assert ranking.top('right', fraction=0.5) == [1, 2]
    assert ranking.top('left', fraction=0.1) == [0]  # round(0.4) = 0 -> at least 1
    with pytest.raises(KeyError, match='available: overall, left, right'):
        ranking.top('top', num_channels=1)
    with pytest.raises(ValueError, match=r'0\.\.4'):
        ranking.top('overall', num_channels=5)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        ranking.top('overall', fraction=0)


def test_save_load_roundtrip(tmp_path):
    ranking = make_ranking()
    path = ranking.save(tmp_path / 'sub' / 'ranking.json')
    data = json.loads(path.read_text())
    assert data['format'] == FORMAT_TAG and data['num_channels'] == 4
    assert data['orders']['left'] == [0, 3, 2, 1]
    assert ChannelRanking.load(path) == ranking
    assert ChannelRanking.load(path, format='auto') == ranking
    assert os.listdir(tmp_path / 'sub') == ['ranking.json']  # no temporary left behind


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / 'ranking.json'
    path.write_text('previous')

    def broken_replace(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(ranking_module.os, 'replace', broken_replace)
    with pytest.raises(OSError, match='disk full'):
        make_ranking().save(path)
    assert path.read_text() == 'previous'
    assert os.listdir(tmp_path) == ['ranking.json']


def test_invalid_ranking_is_not_saved(tmp_path):
    ranking = make_ranking()
    ranking.orders['left'] = [0, 0, 2, 1]
    with pytest.raises(ValueError, match='not a permutation'):
        ranking.save(tmp_path / 'bad.json')
    assert not (tmp_path / 'bad.json').exists()


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(format='something/2'), 'not a posattack ranking'),
    (lambda d: d['orders'].update(left=[0, 1, 2]), 'has 3 entries'),
    (lambda d: d['orders'].update(left=[0, 1, 2, 7]), 'not a permutation'),
    (lambda d: d['scores'].update(horizontal=[0.0, 1.0]), 'length 2'),
    (lambda d: d.update(num_channels=5), 'has 4 entries but num_channels is 5'),
    (lambda d: d['orders'].update(left=[3, 0, 2, 1]), 'not sorted descending'),
    (lambda d: d['order_rules'].update(top={'score': 'vertical', 'descending': True}),
     'does not have'),
])
def test_load_rejects_inconsistent_files(tmp_path, edit, message):
    data = make_ranking().to_dict()
    edit(data)
    path = tmp_path / 'ranking.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        ChannelRanking.load(path)


def test_load_missing_or_invalid_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        ChannelRanking.load(tmp_path / 'absent.json')
    (tmp_path / 'broken.json').write_text('{"format": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        ChannelRanking.load(tmp_path / 'broken.json')
    (tmp_path / 'theirs.json').write_text(json.dumps({'overall': [1, 0]}))
    with pytest.raises(ValueError, match="format='authors'"):
        ChannelRanking.load(tmp_path / 'theirs.json')
    junk = tmp_path / 'junk.json'
    junk.write_bytes(bytes(range(256)))  # not UTF-8: used to raise the codec's message
    for fmt in ('posattack', 'auto', 'authors'):
        with pytest.raises(ValueError) as error:
            ChannelRanking.load(junk, format=fmt)
        assert str(error.value).startswith(f'{junk}: not a ranking file (binary content')


def test_check_compatible():
    ranking = make_ranking()
    ranking.check_compatible(4)
    ranking.check_compatible(None, tensor_shape=(2, 4, 7, 9))  # another input size is fine
    with pytest.raises(ValueError, match='has 4 channels, but the model\'s tensor has 128'):
        ranking.check_compatible(128)
    with pytest.raises(ValueError, match='tools/identify.py'):
        ranking.check_compatible(None, tensor_shape=(2, 8, 7, 9))
    with pytest.raises(ValueError, match='different kind of layer'):
        ranking.check_compatible(4, tensor_shape=(2, 4))


def write_authors_layout(root, num_channels=5):
    """Three files as the authors released them, the right-hand one keyed "left" too."""
    overall = list(range(num_channels))[::-1]
    left = [2, 0, 1, 4, 3][:num_channels]
    right = left[::-1]
    files = {
        'ordered_positional_encoding_neurons_absolute_difference.json': {'overall': overall},
        'left_ordered_positional_encoding_neurons_signed_difference.json': {'left': left},
        'right_ordered_positional_encoding_neurons_signed_difference.json': {'left': right},
    }
    for name, content in files.items():
        (root / name).write_text(json.dumps(content))
    return overall, left, right


def test_authors_layout_region_from_file_name(tmp_path):
    overall, left, right = write_authors_layout(tmp_path)
    ranking = ChannelRanking.load(tmp_path, format='authors')
    assert ranking.regions == ['overall', 'left', 'right']
    assert ranking.orders == {'overall': overall, 'left': left, 'right': right}
    assert (ranking.method, ranking.num_images, ranking.layer) == ('authors_release', None,
                                                                   'backbone:3')
    assert ChannelRanking.load(tmp_path, format='auto') == ranking
    single = ChannelRanking.load(
        tmp_path / 'right_ordered_positional_encoding_neurons_signed_difference.json',
        format='authors', layer='backbone:-1')
    assert single.regions == ['right'] and single.layer == 'backbone:-1'


def test_authors_layout_errors(tmp_path):
    write_authors_layout(tmp_path)
    (tmp_path / 'left_copy.json').write_text(json.dumps({'left': [0, 1, 2, 3, 4]}))
    with pytest.raises(ValueError, match="Two files give the 'left' order"):
        ChannelRanking.load(tmp_path, format='authors')
    (tmp_path / 'left_copy.json').unlink()
    (tmp_path / 'top_short.json').write_text(json.dumps({'top': [0, 1]}))
    with pytest.raises(ValueError, match='disagree on the channel count'):
        ChannelRanking.load(tmp_path, format='authors')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'No \*\.json'):
        ChannelRanking.load(tmp_path / 'empty', format='authors')
    with pytest.raises(FileNotFoundError, match='not found'):
        ChannelRanking.load([tmp_path / 'absent.json'], format='authors')


def test_authors_release_loads_as_2048_channel_ranking(tmp_path):
    ranking = ChannelRanking.load(AUTHORS_RANKINGS, format='authors')
    assert ranking.num_channels == 2048
    assert ranking.regions == ['overall', 'left', 'right']
    # First entries read off the released files by hand.
    assert ranking.top('overall', num_channels=3) == [1540, 111, 157]
    assert ranking.top('left', num_channels=3) == [624, 562, 1335]
    assert ranking.top('right', num_channels=3) == [810, 1384, 699]
    assert len(ranking.top('overall', fraction=0.05)) == 102
    ranking.check_compatible(2048, tensor_shape=(1, 2048, 64, 128))
    with pytest.raises(ValueError, match='2048 channels'):
        ranking.check_compatible(128)  # the demo model's backbone output
    reloaded = ChannelRanking.load(ranking.save(tmp_path / 'authors.json'))
    assert reloaded == ranking


def test_the_paper_config_names_the_shipped_release():
    """No ../shared needed: the release ships beside the paper's config, with its licence."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'paper',
                                   'deeplabv3_r50-os16_authors_cityscapes.py'))
    assert osp.samefile(cfg.authors_rankings, AUTHORS_RANKINGS)
    ranking = ChannelRanking.load(cfg.authors_rankings, format='authors')
    assert ranking.layer == 'backbone:3' and ranking.num_channels == 2048
    with open(osp.join(AUTHORS_RANKINGS, 'LICENSE')) as f:
        notice = f.read()
    assert 'MIT License' in notice and 'Copyright (c) 2021 Md Amirul Islam' in notice
