"""core.layers: a layer's output as a (N, C, h, w) grid, and a default layer that is never a
patch embedding."""

import pytest
import torch
from torch import nn

from deepvid_plugin.core import layers


@pytest.mark.parametrize("shape, hw, want", [
    ((2, 64, 7, 7), (224, 224), layers.Grid("nchw")),
    ((2, 7, 7, 768), (224, 224), layers.Grid("nhwc")),  # torchvision's Swin
    ((2, 197, 192), (224, 224), layers.Grid("tokens", 1, (14, 14))),  # ViT: class token
    ((2, 198, 192), (224, 224), layers.Grid("tokens", 2, (14, 14))),  # DeiT: + distillation
    ((2, 201, 384), (224, 224), layers.Grid("tokens", 5, (14, 14))),  # DINOv2: 4 registers
    ((2, 49, 768), (224, 224), layers.Grid("tokens", 0, (7, 7))),  # HuggingFace Swin
    ((2, 141, 192), (224, 160), layers.Grid("tokens", 1, (14, 10))),  # non-square input
])
def test_find_grid(shape, hw, want):
    assert layers.find_grid(shape, hw) == want


def test_model_hints_and_refusals():
    assert layers.find_grid((2, 7, 7, 7), (224, 224)) == layers.Grid("nchw")  # ambiguous: NCHW
    assert layers.find_grid((2, 7, 7, 7), (224, 224), output_fmt="NHWC") == layers.Grid("nhwc")
    assert layers.find_grid((2, 197, 8), (224, 224), prefix_tokens=1).prefix == 1
    assert layers.find_grid((2, 10), (224, 224)) is None
    assert layers.find_grid((2, 197, 8), (224, 224), prefix_tokens=3) is None  # 194 is no grid
    with pytest.raises(ValueError, match=r"layer: expected 'head' to output \(N, C, h, w\) .*got "
                                         r"shape \(2, 10\).*reshape="):
        layers.grid_of("head", torch.zeros(2, 10), (32, 32))


def test_token_grid_keeps_every_patch_in_place():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # 1 + 2x2 patches, C=3
    grid = layers.grid_of("blk", tokens, (8, 8))
    assert grid.shape == (2, 3, 2, 2)
    # patch (i, j) is token 1 + 2i + j, channel c its c-th value
    assert grid[1, 2, 1, 0] == tokens[1, 1 + 2 * 1 + 0, 2]
    custom = layers.grid_of("blk", tokens, (8, 8),
                            reshape=lambda t: t[:, 1:].reshape(2, 2, 2, 3).permute(0, 3, 1, 2))
    torch.testing.assert_close(custom, grid)
    with pytest.raises(ValueError, match=r"reshape: expected a callable returning \(N, C, h, w\)"):
        layers.grid_of("blk", tokens, (8, 8), reshape=lambda t: t)


class TinyViT(nn.Module):
    """Patch embedding (conv, stride = kernel), transformer-style blocks with norms, final norm."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(8)
            self.mix = nn.Linear(8, 8)
            self.norm2 = nn.LayerNorm(8)

        def forward(self, t):
            t = t + self.mix(self.norm1(t))
            return t + self.norm2(t)

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.blocks = nn.Sequential(self.Block(), self.Block())
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
        return self.head(self.norm(self.blocks(t))[:, 0])


def test_default_layer_of_a_transformer_is_its_last_block_norm():
    model = TinyViT()
    name, module = layers.default_layer(model, torch.rand(1, 3, 16, 16), model)
    assert name == "blocks.1.norm1" and module is model.blocks[1].norm1


def test_default_layer_of_a_cnn_is_its_last_convolution():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert layers.default_layer(model, torch.rand(1, 3, 8, 8), model)[0] == "2"


def test_a_patch_embedding_alone_is_refused():
    class PatchOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.patch(x).mean((2, 3)))

    with pytest.raises(ValueError, match=r"layer: the model's last convolution 'patch' is a patch "
                                         r"embedding.*name the layer"):
        model = PatchOnly()
        layers.default_layer(model, torch.rand(1, 3, 8, 8), model)
