"""Small versions of the architectures people train, written as people write them: functional
activations in ``forward``, residual sums, concatenations, BatchNorm, pooling, attention through
``F.scaled_dot_product_attention`` and ``nn.TransformerEncoderLayer``, tied embeddings. Each
model's activation is a plain attribute (``self.act = F.relu``) only so that the tests can open
every gate (``act = identity``) for a reference; the calls stay functional."""

import torch
import torch.nn.functional as F
from torch import nn


def identity(x):
    return x


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.act = F.relu
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = self.act(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) for small images: F.relu, residual sums,
    BatchNorm, global average pooling."""

    def __init__(self, widths=(8, 16), classes=10, channels=3):
        super().__init__()
        self.act = F.relu
        self.stem = nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(PreActBlock(cin, w, stride=1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        out = self.blocks(self.stem(x))
        out = F.adaptive_avg_pool2d(self.act(self.bn(out)), 1).flatten(1)
        return self.fc(out)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU module used twice, ``out += identity``."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class PostActResNet(nn.Module):
    """torchvision-style ResNet: stem with max pooling, post-activation blocks."""

    def __init__(self, widths=(8, 16), classes=10, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(BasicBlock(cin, w, stride=1 if i == 0 else 2))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


class DenseNet(nn.Module):
    """A DenseNet block: every layer sees the concatenation of all earlier outputs."""

    def __init__(self, channels=3, growth=4, depth=3, classes=10):
        super().__init__()
        self.act = F.relu
        self.stem = nn.Conv2d(channels, 2 * growth, 3, 1, 1)
        self.norms, self.convs = nn.ModuleList(), nn.ModuleList()
        width = 2 * growth
        for _ in range(depth):
            self.norms.append(nn.BatchNorm2d(width))
            self.convs.append(nn.Conv2d(width, growth, 3, 1, 1))
            width += growth
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        features = [self.stem(x)]
        for norm, conv in zip(self.norms, self.convs):
            features.append(conv(self.act(norm(torch.cat(features, 1)))))
        return self.fc(F.avg_pool2d(torch.cat(features, 1), x.shape[-1]).flatten(1))


class ViT(nn.Module):
    """A small vision transformer: patches by a strided convolution, a class token, learned
    position embeddings, ``nn.TransformerEncoderLayer`` blocks (pre-norm, GELU)."""

    def __init__(self, image=8, patch=4, channels=3, dim=16, depth=2, heads=2, classes=10):
        super().__init__()
        self.patches = nn.Conv2d(channels, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.act = F.gelu
        self.ln1, self.attn = nn.LayerNorm(dim), CausalSelfAttention(dim, heads)
        self.ln2, self.fc, self.out = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(self.act(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A character-level GPT (nanoGPT style): token and position embeddings, causal attention by
    ``F.scaled_dot_product_attention``, functional GELU, the head tied to the token embedding."""

    def __init__(self, vocab=12, block=8, dim=16, depth=2, heads=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def tiny_gpt2():
    """A Hugging Face GPT-2 built from a small config (no download), or None without
    ``transformers``."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    config = GPT2Config(vocab_size=12, n_positions=8, n_embd=16, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


IMAGE_MODELS = {"preact-resnet": PreActResNet, "postact-resnet": PostActResNet,
                "densenet": DenseNet, "vit": ViT}


def images(batch=4, size=8, channels=3, seed=0):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def tokens(batch=4, block=8, vocab=12, seed=0):
    return torch.randint(0, vocab, (batch, block), generator=torch.Generator().manual_seed(seed))
