"""Weight pathways beyond chains (SPEC 4.2, any architecture): on tiny residual networks (a skip
around one layer, around two, a concatenation, average pooling) every pathway, skip paths
included, is enumerated one by one and summed, and compared with the static radiograph (signed
and unsigned), the gated radiograph and the characteristic maps."""

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnmodes_widgets.analysis import characteristic_maps, gated_radiograph, static_radiograph

# -- a network as a graph of neuron groups ------------------------------------------------------------


@dataclass
class Node:
    """A group of neurons: its pre-activation is the sum over ``inputs`` of matrix @ (the source's
    output); its output is act(pre-activation) (no act: the pre-activation itself)."""
    size: int
    inputs: list            # [(source node name, matrix [size, source size])]
    act: str | None = None
    bias: np.ndarray | float = 0.0


ACTS = {"relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}


def forward(graph, x):
    """Pre-activations of every node for one sample x, in plain NumPy float64."""
    pre, post = {}, {"in": np.asarray(x, dtype=float)}
    for name, node in graph.items():
        pre[name] = sum(m @ post[src] for src, m in node.inputs) + node.bias
        post[name] = ACTS[node.act][0](pre[name]) if node.act else pre[name]
    return pre


def pathway_sums(graph, target, units, n_in, *, gates=None, absolute=False):
    """R[u, i]: the sum over EVERY pathway from input i to the neurons of unit u of ``target``
    (a unit: a set of neurons whose pre-activations are summed, e.g. a channel's positions), each
    pathway the product of its coefficients (absolute values if asked) and of the gates of the
    hidden neurons it passes (none: static). Pathways are enumerated one at a time, depth first."""
    def walk(node, j):                   # (input index, value) of every pathway ending at (node, j)
        if node == "in":
            yield j, 1.0
            return
        for src, m in graph[node].inputs:
            for k in range(m.shape[1]):
                c = abs(m[j, k]) if absolute else m[j, k]
                if c == 0:                # a zero coefficient: every pathway through it is 0
                    continue
                gate = 1.0
                if src != "in" and graph[src].act and gates is not None:
                    gate = gates[src][k]
                for i, v in walk(src, k):
                    yield i, c * gate * v

    out = np.zeros((len(units), n_in))
    for u, neurons in enumerate(units):
        for j in neurons:
            for i, v in walk(target, j):
                out[u, i] += v
    return out


def dense(module, in_shape):
    """The matrix of a bias-free linear module acting on a flattened sample of ``in_shape``."""
    n = int(np.prod(in_shape))
    with torch.no_grad():
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
        cols = module(basis).reshape(n, -1)
    return cols.T.numpy()


def eye(n):
    return np.eye(n)


def params(model):
    return ({n: m.weight.detach().double().numpy() for n, m in model.named_children()},
            {n: m.bias.detach().double().numpy() for n, m in model.named_children()})


# -- the networks: torch modules and their graphs ------------------------------------------------------

class SkipOne(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc3(F.relu(self.fc2(h1)) + h1)

    def graph(self):
        w, b = params(self)
        return {"fc1": Node(4, [("in", w["fc1"])], "relu", b["fc1"]),
                "fc2": Node(4, [("fc1", w["fc2"])], "relu", b["fc2"]),
                "sum": Node(4, [("fc2", eye(4)), ("fc1", eye(4))]),
                "fc3": Node(2, [("sum", w["fc3"])], None, b["fc3"])}


class SkipTwo(nn.Module):
    """A skip around two layers, with a BatchNorm (eval: a per-neuron scale) and a tanh inside."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(4, 3), nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(3)
        self.fc4 = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(-2, 2)

    def forward(self, x):
        h1 = torch.relu(self.fc1(x))
        inner = self.fc3(torch.tanh(self.bn(self.fc2(h1))))
        return self.fc4(inner.relu() + h1)

    def graph(self):
        w, b = params(self)
        bn = self.bn
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
        shift = (bn.bias - bn.running_mean * scale).detach().double().numpy()
        return {"fc1": Node(4, [("in", w["fc1"])], "relu", b["fc1"]),
                "fc2": Node(3, [("fc1", w["fc2"])], None, b["fc2"]),
                "bn": Node(3, [("fc2", np.diag(scale.numpy()))], "tanh", shift),
                "fc3": Node(4, [("bn", w["fc3"])], "relu", b["fc3"]),
                "sum": Node(4, [("fc3", eye(4)), ("fc1", eye(4))]),
                "fc4": Node(2, [("sum", w["fc4"])], None, b["fc4"])}


class Concat(nn.Module):
    """DenseNet style: a layer's input is the concatenation of the earlier outputs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(4, 3), nn.Linear(7, 2)

    def forward(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc3(torch.cat([h1, F.leaky_relu(self.fc2(h1), 0.0)], dim=1))

    def graph(self):
        w, b = params(self)
        first, second = np.zeros((7, 4)), np.zeros((7, 3))
        first[:4] = eye(4)
        second[4:] = eye(3)
        return {"fc1": Node(4, [("in", w["fc1"])], "relu", b["fc1"]),
                "fc2": Node(3, [("fc1", w["fc2"])], "relu", b["fc2"]),   # leaky_relu, slope 0
                "cat": Node(7, [("fc1", first), ("fc2", second)]),
                "fc3": Node(2, [("cat", w["fc3"])], None, b["fc3"])}


class PooledResidual(nn.Module):
    """Convolutions, average pooling and a skip around a 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        pooled = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc((F.relu(self.conv2(pooled)) + pooled).flatten(1))

    def graph(self):
        # average pooling written out: output (c, i, j) takes 1/4 of each input in its 2x2 block
        pool = np.zeros((8, 32))
        for c, i, j, di, dj in itertools.product(range(2), range(2), range(2), range(2), range(2)):
            pool[c * 4 + i * 2 + j, c * 16 + (2 * i + di) * 4 + (2 * j + dj)] = 0.25
        conv1 = dense(lambda v: F.conv2d(v, self.conv1.weight.double(), padding=1), (1, 4, 4))
        conv2 = dense(lambda v: F.conv2d(v, self.conv2.weight.double()), (2, 2, 2))
        per_position = (lambda conv, positions:
                        np.repeat(conv.bias.detach().double().numpy(), positions))
        return {"conv1": Node(32, [("in", conv1)], "relu", per_position(self.conv1, 16)),
                "pool": Node(8, [("conv1", pool)]),
                "conv2": Node(8, [("pool", conv2)], "relu", per_position(self.conv2, 4)),
                "sum": Node(8, [("conv2", eye(8)), ("pool", eye(8))]),
                "fc": Node(3, [("sum", self.fc.weight.detach().double().numpy())], None,
                           self.fc.bias.detach().double().numpy())}


NETS = {"skip-one": (SkipOne, (3,)), "skip-two": (SkipTwo, (3,)), "concat": (Concat, (3,)),
        "avgpool-skip": (PooledResidual, (1, 4, 4))}


def build(kind, seed=0):
    torch.manual_seed(seed)
    cls, shape = NETS[kind]
    return cls().double().eval(), shape


def units_of(graph, layer, model):
    """The neurons of each unit: a channel's positions for a convolution, one neuron otherwise."""
    module = dict(model.named_modules())[layer]
    size = graph[layer].size
    if isinstance(module, nn.Conv2d):
        per = size // module.out_channels
        return [range(c * per, (c + 1) * per) for c in range(module.out_channels)]
    return [[j] for j in range(size)]


LAYERS = {"skip-one": ["fc1", "fc2", "fc3"], "skip-two": ["fc1", "fc2", "fc3", "fc4"],
          "concat": ["fc1", "fc2", "fc3"], "avgpool-skip": ["conv1", "conv2", "fc"]}


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("signed", [True, False])
def test_static_radiographs_sum_every_pathway_skip_paths_included(kind, signed):
    model, shape = build(kind)
    graph = model.graph()
    n_in = int(np.prod(shape))
    for layer in LAYERS[kind]:
        got = static_radiograph(model, layer, signed=signed, input_shape=shape)
        assert got.frozen == ()       # nothing but weights, gates, sums, pooling and BatchNorm
        expected = pathway_sums(graph, layer, units_of(graph, layer, model), n_in,
                                absolute=not signed)
        np.testing.assert_allclose(got.reshape(len(expected), -1).numpy(), expected,
                                   rtol=1e-10, atol=1e-12, err_msg=f"{kind} {layer}")


@pytest.mark.parametrize("kind", list(NETS))
def test_gated_radiographs_and_characteristic_maps_sum_every_gated_pathway(kind):
    model, shape = build(kind)
    graph = model.graph()
    n_in = int(np.prod(shape))
    x = torch.randn(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for layer in LAYERS[kind]:
        got = gated_radiograph(model, x, layer)
        maps = characteristic_maps(model, x, layer)
        for b in range(len(x)):
            sample = x[b].flatten().numpy()
            pre = forward(graph, sample)
            gates = {name: ACTS[node.act][1](pre[name]) for name, node in graph.items() if node.act}
            expected = pathway_sums(graph, layer, units_of(graph, layer, model), n_in, gates=gates)
            np.testing.assert_allclose(got[b].reshape(len(expected), -1).numpy(), expected,
                                       rtol=1e-10, atol=1e-12, err_msg=f"{kind} {layer} sample {b}")
            np.testing.assert_allclose(maps[b].reshape(len(expected), -1).numpy(),
                                       expected * sample, rtol=1e-10, atol=1e-12)


def test_the_graphs_compute_what_the_modules_compute():
    """The reference graphs are the networks: the same outputs on random samples."""
    for kind in NETS:
        model, shape = build(kind)
        graph = model.graph()
        x = torch.randn(4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            out = model(x).numpy()
        last = list(graph)[-1]
        for b in range(len(x)):
            np.testing.assert_allclose(forward(graph, x[b].flatten().numpy())[last], out[b],
                                       rtol=1e-12, atol=1e-12, err_msg=kind)
