"""The authors' network, written here in plain torch from torchvision's published structure.

The independent expectation for the converted checkpoint: a DeepLabv3 with a ResNet-50
backbone at output stride 16 (torchvision's ``resnet50(replace_stride_with_dilation=[False,
False, True])`` under ``IntermediateLayerGetter``, so no avgpool/fc) and torchvision's
``DeepLabHead`` (ASPP at rates 6/12/18, then 3x3 conv + BN + ReLU, then a 1x1 classifier),
with the state-dict names their file has. Nothing here comes from posattack or mmseg.

    net = randomise(TorchvisionDeepLabV3(num_classes=19, nested_classifier=True))
    torch.save({'model_state': net.state_dict()}, path)    # as their training script saves
    logits = net(normalised_rgb)                              # (B, 19, H, W)

``nested_classifier=True`` is their code (keys ``classifier.classifier.<i>``: their
DeepLabHead keeps the Sequential in an attribute); False is torchvision's own layout
(``classifier.<i>``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Backbone(nn.Module):
    """torchvision's resnet50 up to layer4, ``replace_stride_with_dilation`` as given."""

    def __init__(self, replace_stride_with_dilation=(False, False, True)):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(256, 6, 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(512, 3, 2, replace_stride_with_dilation[2])

    def _make_layer(self, planes, blocks, stride=1, dilate=False):
        # torchvision's rule: a dilated layer trades its stride for dilation, and its FIRST
        # block keeps the dilation the network had before (1 here); the rest get the new one.
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__(nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x):
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode='bilinear', align_corners=False)


class ASPP(nn.Module):
    def __init__(self, in_channels, rates, out_channels=256, dropout=0.1):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))]
        for rate in rates:
            branches.append(nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)))
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


def deeplab_head(in_channels, num_classes, rates=(6, 12, 18)):
    return nn.Sequential(ASPP(in_channels, rates), nn.Conv2d(256, 256, 3, padding=1, bias=False),
                         nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Conv2d(256, num_classes, 1))


class TorchvisionDeepLabV3(nn.Module):
    """backbone + classifier; the logits upsampled bilinearly (align_corners=False) to the input."""

    def __init__(self, num_classes=19, nested_classifier=True):
        super().__init__()
        self.backbone = ResNet50Backbone()
        head = deeplab_head(2048, num_classes)
        self.nested_classifier = nested_classifier
        if nested_classifier:
            self.classifier = nn.Module()
            self.classifier.classifier = head
        else:
            self.classifier = head

    def forward(self, x):
        head = self.classifier.classifier if self.nested_classifier else self.classifier
        logits = head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics that keep activations in range and make every
    layer matter (a fresh BN would be the identity at test time)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            elif isinstance(module, nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + 0.5 * torch.rand(shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
                module.num_batches_tracked.fill_(int(torch.randint(1, 10000, (1,),
                                                                   generator=generator)))
    return net.eval()


def normalise(bgr_uint8: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) BGR 0..255 -> (1, 3, H, W) RGB on 0..1, ImageNet-normalised: their input."""
    rgb = bgr_uint8.flip(-1).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((rgb - mean) / std)[None]
