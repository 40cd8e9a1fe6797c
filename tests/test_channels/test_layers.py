"""Layer names: resolving, listing, defaults, capture with early exit, clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from posattack.channels.layers import (LayerRef, StopForward, capture, default_layer,
                                       list_layer_names, parse_layer_name, replace_output,
                                       resolve_layer, select_output)


class TwoStageBackbone(nn.Module):
    """Returns a tuple of two stage outputs, as mmseg backbones do."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer2 = nn.Conv2d(4, 6, 3, padding=1)
        self.out_indices = (0, 1)

    def forward(self, x):
        a = self.layer1(x)
        return a, self.layer2(a)


class Head(nn.Module):
    def __init__(self, in_index):
        super().__init__()
        self.in_index = in_index
        self.conv = nn.Conv2d(6, 2, 1)

    def forward(self, feats):
        raise AssertionError('the head must not run when capture stops at the backbone')


class Segmentor(nn.Module):
    def __init__(self, in_index=1, neck=False):
        super().__init__()
        self.backbone = TwoStageBackbone()
        if neck:
            self.neck = nn.Identity()
        self.decode_head = Head(in_index)

    def forward(self, x):
        return self.decode_head(self.backbone(x))


def test_parse_and_resolve_names():
    model = Segmentor()
    assert parse_layer_name('backbone:-1') == ('backbone', -1)
    assert parse_layer_name(' backbone.layer2 ') == ('backbone.layer2', None)
    ref = resolve_layer(model, 'backbone:1')
    assert (ref.name, ref.module_path, ref.index) == ('backbone:1', 'backbone', 1)
    assert ref.module is model.backbone
    ref = resolve_layer(model, 'backbone.layer2')
    assert ref.module is model.backbone.layer2 and ref.index is None
    assert resolve_layer(model, ref) is ref


@pytest.mark.parametrize('bad', ['backbone:x', ':3', '', '   '])
def test_malformed_names_raise(bad):
    with pytest.raises(ValueError, match='Layer name|non-empty'):
        resolve_layer(Segmentor(), bad)


def test_unknown_layer_lists_nearest_names():
    with pytest.raises(ValueError) as info:
        resolve_layer(Segmentor(), 'backbone.layr2')
    message = str(info.value)
    assert 'Unknown layer' in message and 'backbone.layer2' in message
    assert 'list_layer_names' in message


def test_list_layer_names_includes_index_forms():
    names = list_layer_names(Segmentor())
    assert names[:3] == ['backbone:0', 'backbone:1', 'backbone:-1']
    assert {'backbone', 'backbone.layer1', 'backbone.layer2', 'decode_head.conv'} <= set(names)
    assert '' not in names


@pytest.mark.parametrize('in_index, neck, expected', [
    (1, False, 'backbone:1'),
    (-1, False, 'backbone:1'),      # normalised with the backbone's two outputs
    ([0, -1], False, 'backbone:1'),  # multi-input head: the deepest input
    ([1, 0], True, 'neck:1'),
])
def test_default_layer(in_index, neck, expected):
    assert default_layer(Segmentor(in_index, neck)) == expected


def test_default_layer_without_head_is_a_clear_error():
    with pytest.raises(ValueError, match='name the layer explicitly|Name the layer explicitly'):
        default_layer(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_select_output_errors_name_the_tuple_length():
    model = Segmentor()
    output = model.backbone(torch.zeros(1, 3, 4, 4))
    assert select_output(output, resolve_layer(model, 'backbone:-1')) is output[1]
    with pytest.raises(IndexError, match=r'returns 2 tensors.*0\.\.1'):
        select_output(output, resolve_layer(model, 'backbone:2'))
    with pytest.raises(ValueError, match='add an index'):
        select_output(output, resolve_layer(model, 'backbone'))
    with pytest.raises(ValueError, match='drop the index'):
        select_output(output[0], resolve_layer(model, 'backbone.layer1:0'))


def test_replace_output_keeps_container_type():
    ref = LayerRef('m:0', 'm', nn.Identity(), 0)
    new = torch.ones(1)
    replaced = replace_output((torch.zeros(1), torch.zeros(2)), ref, new)
    assert isinstance(replaced, tuple) and replaced[0] is new and replaced[1].shape == (2,)
    replaced = replace_output([torch.zeros(1), torch.zeros(2)], ref, new)
    assert isinstance(replaced, list) and replaced[0] is new
    plain = LayerRef('m', 'm', nn.Identity(), None)
    assert replace_output(torch.zeros(1), plain, new) is new


def test_capture_stops_after_the_layer_and_removes_its_hook():
    model = Segmentor()
    x = torch.randn(2, 3, 5, 7)
    with capture(model, 'backbone:1', stop=True) as cap:
        model(x)  # the head would raise: the hook stops the forward first
    expected = model.backbone.layer2(model.backbone.layer1(x))
    torch.testing.assert_close(cap.output, expected)
    assert cap.calls == 1
    assert not model.backbone._forward_hooks
    with capture(model, 'backbone.layer1') as cap:
        model.backbone(x)  # without stop the forward completes
    assert cap.output.shape == (2, 4, 5, 7)
    assert not model.backbone.layer1._forward_hooks


def test_capture_out_of_range_index_fails_at_forward_time():
    model = Segmentor()
    with pytest.raises(IndexError, match='returns 2 tensors'):
        with capture(model, 'backbone:5', stop=True):
            model(torch.zeros(1, 3, 4, 4))
    assert not model.backbone._forward_hooks


def test_stop_forward_is_not_swallowed_outside_capture():
    model = Segmentor()
    hook = model.backbone.register_forward_hook(lambda *a: (_ for _ in ()).throw(StopForward()))
    with pytest.raises(StopForward):
        model(torch.zeros(1, 3, 4, 4))
    hook.remove()


def test_demo_model_layers(tiny_segmentor):
    assert default_layer(tiny_segmentor) == 'backbone:3'
    names = list_layer_names(tiny_segmentor)
    assert {'backbone:3', 'backbone:-1', 'backbone.layer4', 'decode_head.conv_seg'} <= set(names)
    with capture(tiny_segmentor, 'backbone:3', stop=True) as cap:
        tiny_segmentor.extract_feat(torch.zeros(1, 3, 64, 128))
    assert tuple(cap.output.shape) == (1, 128, 8, 16)  # 128 channels at output stride 8
    with capture(tiny_segmentor, 'backbone.layer4', stop=True) as same:
        tiny_segmentor.extract_feat(torch.zeros(1, 3, 64, 128))
    torch.testing.assert_close(same.output, cap.output)
