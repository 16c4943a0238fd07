"""Weight pathway analysis (SPEC 4.2; Feng et al., arXiv 2202.13829): static and gated
radiographs and characteristic maps against every pathway enumerated explicitly, against
autograd Jacobians, exact invariants; what is refused and why; the model left as found."""

import itertools
import math

import pytest
import torch
from torch import nn

from nnmodes_widgets.analysis import (characteristic_maps, gated_radiograph, pathway_layers,
                                      static_radiograph)

from modelstate import assert_unchanged, model_state  # tests/modelstate.py



# -- brute force ---------------------------------------------------------------------------------------

# activation module -> its derivative written out independently (for ReLU-like kinks autograd's
# convention: the derivative at 0 is the left one)
def _sig(z):
    return 1 / (1 + math.exp(-z))


SLOPES = {
    "relu": (nn.ReLU, lambda z: 1.0 if z > 0 else 0.0),
    "leaky": (lambda: nn.LeakyReLU(0.1), lambda z: 1.0 if z > 0 else 0.1),
    "tanh": (nn.Tanh, lambda z: 1 - math.tanh(z) ** 2),
    "sigmoid": (nn.Sigmoid, lambda z: _sig(z) * (1 - _sig(z))),
    "softplus": (nn.Softplus, _sig),
    "elu": (nn.ELU, lambda z: 1.0 if z > 0 else math.exp(z)),
    "silu": (nn.SiLU, lambda z: _sig(z) * (1 + z * (1 - _sig(z)))),
    "gelu": (nn.GELU, lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
             + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)),
}


def mlp(widths, act="relu", bias=True, seed=0, dtype=torch.float64):
    """Linear(widths[0] -> widths[1]), act, ..., Linear(-> widths[-1]); float64 for exact checks."""
    torch.manual_seed(seed)
    layers = []
    for k in range(len(widths) - 1):
        layers.append(nn.Linear(widths[k], widths[k + 1], bias=bias))
        if k < len(widths) - 2:
            layers.append(SLOPES[act][0]())
    return nn.Sequential(*layers).to(dtype)


def weights_of(model):
    return [m.weight.detach().tolist() for m in model if isinstance(m, nn.Linear)]


def biases_of(model):
    return [m.bias.detach().tolist() if m.bias is not None else None
            for m in model if isinstance(m, nn.Linear)]


def gates_by_hand(model, x, act):
    """Gates s'(z^k) of every hidden layer for one sample, from pre-activations computed by
    hand in Python floats."""
    slope = SLOPES[act][1]
    h, gates = list(x), []
    ws, bs = weights_of(model), biases_of(model)
    for k, (w, b) in enumerate(zip(ws, bs)):
        z = [sum(w[n][i] * h[i] for i in range(len(h))) + (b[n] if b else 0.0) for n in range(len(w))]
        if k == len(ws) - 1:
            break
        module = [m for m in model if not isinstance(m, nn.Linear)][k]
        gates.append([slope(v) for v in z])
        h = module(torch.tensor(z, dtype=torch.float64)).tolist()
    return gates


def pathway_sum(ws, layer, n, i, gates=None, absolute=False):
    """Sum over EVERY pathway (i, i_1, ..., i_{layer-1}, n) of the product of its weights (and of
    the gates of the hidden neurons it passes), enumerated with itertools.product."""
    hidden = [range(len(ws[k])) for k in range(layer)]   # neurons of layers 1..layer-1 (0-based)
    total = 0.0
    for path in itertools.product(*hidden):
        nodes = (i, *path, n)
        value = 1.0
        for k in range(layer + 1):
            w = ws[k][nodes[k + 1]][nodes[k]]
            value *= abs(w) if absolute else w
            if gates is not None and k < layer:
                value *= gates[k][nodes[k + 1]]
        total += value
    return total


def sequential_prefix(model, layer):
    """The model's modules up to and including module ``layer`` (by Sequential index)."""
    return nn.Sequential(*list(model)[: int(layer) + 1])


def channel_sum_jacobian(fn, x):
    """Autograd Jacobian [B, n, *x.shape[1:]] of the per-sample outputs of fn, conv outputs
    summed over their positions."""
    def summed(v):
        out = fn(v)
        if out.ndim > 2:
            out = out.reshape(*out.shape[:2], -1).sum(-1)
        return out.sum(0)   # samples are independent: d sum_b out_b / dx_b = d out_b / dx_b
    jac = torch.autograd.functional.jacobian(summed, x)   # [n, B, *shape]
    return jac.transpose(0, 1)


CASES = [  # (widths, activation, bias)
    ((2, 3, 2), "relu", True), ((3, 2, 4), "relu", False), ((4, 5, 3, 2), "relu", True),
    ((2, 4, 3, 5, 2), "relu", False), ((3, 3, 3, 3), "leaky", True), ((2, 5, 4, 3), "tanh", False),
    ((5, 2, 3, 4, 3), "sigmoid", True), ((3, 4, 2), "gelu", True), ((2, 3, 4, 2), "silu", False),
    ((4, 3, 5), "elu", True), ((2, 2, 2, 2, 2), "softplus", True),
]


# -- enumerated pathways ---------------------------------------------------------------------------------

@pytest.mark.parametrize("widths,act,bias", CASES)
@pytest.mark.parametrize("signed", [True, False])
def test_static_radiograph_is_the_sum_over_every_pathway(widths, act, bias, signed):
    model = mlp(widths, act, bias, seed=len(widths) + widths[1])
    ws = weights_of(model)
    linear_names = [str(k) for k, m in enumerate(model) if isinstance(m, nn.Linear)]
    for layer, name in enumerate(linear_names):
        got = static_radiograph(model, name, signed=signed)
        assert got.shape == (widths[layer + 1], widths[0])
        for n in range(widths[layer + 1]):
            for i in range(widths[0]):
                expected = pathway_sum(ws, layer, n, i, absolute=not signed)
                assert got[n, i].item() == pytest.approx(expected, rel=1e-10, abs=1e-12), (name, n, i)


@pytest.mark.parametrize("widths,act,bias", CASES)
def test_gated_radiograph_is_the_sum_over_every_gated_pathway(widths, act, bias):
    model = mlp(widths, act, bias, seed=sum(widths))
    ws = weights_of(model)
    x = torch.randn(3, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    linear_names = [str(k) for k, m in enumerate(model) if isinstance(m, nn.Linear)]
    for layer, name in enumerate(linear_names):
        got = gated_radiograph(model, x, name)
        assert got.shape == (3, widths[layer + 1], widths[0])
        for b in range(3):
            gates = gates_by_hand(model, x[b].tolist(), act)
            for n in range(widths[layer + 1]):
                for i in range(widths[0]):
                    expected = pathway_sum(ws, layer, n, i, gates=gates)
                    assert got[b, n, i].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("act", ["relu", "leaky", "tanh", "sigmoid", "gelu", "silu", "elu", "softplus"])
def test_gated_radiograph_equals_the_autograd_jacobian(act):
    model = mlp((6, 7, 5, 4, 3), act, seed=3)
    x = torch.randn(5, 6, dtype=torch.float64)
    for name in ("0", "2", "4", "6"):
        expected = channel_sum_jacobian(sequential_prefix(model, name), x)
        got = gated_radiograph(model, x, name)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_float32_gated_radiograph_of_relu_net_equals_autograd():
    model = mlp((12, 16, 16, 4), "relu", seed=5, dtype=torch.float32)
    x = torch.randn(9, 12)
    expected = channel_sum_jacobian(model, x)
    torch.testing.assert_close(gated_radiograph(model, x, "4"), expected, rtol=1e-5, atol=1e-6)


def test_gates_at_exact_zero_follow_autograd():
    model = mlp((2, 2, 1), "relu", bias=False, seed=0)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)   # z_0 = 0 exactly: ReLU'(0) = 0 in autograd
    torch.testing.assert_close(gated_radiograph(model, x, "2"), channel_sum_jacobian(model, x))


# -- characteristic maps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("widths", [(3, 4, 2), (5, 4, 3, 2), (4, 5, 3, 4, 3)])
def test_characteristic_maps_of_a_bias_free_relu_net_sum_to_the_preactivation(widths):
    model = mlp(widths, "relu", bias=False, seed=7)
    x = torch.randn(6, widths[0], dtype=torch.float64)
    for name in [str(k) for k, m in enumerate(model) if isinstance(m, nn.Linear)]:
        maps = characteristic_maps(model, x, name)
        with torch.no_grad():
            z = sequential_prefix(model, name)(x)
        torch.testing.assert_close(maps.sum(-1), z, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(maps, gated_radiograph(model, x, name) * x[:, None, :])


def test_characteristic_maps_with_bias_do_not_sum_to_the_preactivation():
    model = mlp((3, 4, 2), "relu", bias=True, seed=7)
    with torch.no_grad():
        model[2].bias.fill_(5.0)
    x = torch.randn(6, 3, dtype=torch.float64)
    maps = characteristic_maps(model, x, "2")
    with torch.no_grad():
        assert not torch.allclose(maps.sum(-1), model(x))


def test_class_averaged_characteristic_maps_are_the_per_class_means():
    model = mlp((4, 5, 3), "tanh", seed=2)
    x = torch.randn(10, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 2, 1, 0, 2, 1, 1, 2, 0])
    per_sample = characteristic_maps(model, x, "2")
    averaged = characteristic_maps(model, x, "2", y=y)
    assert averaged.shape == (3, 3, 4)
    for c in range(3):
        torch.testing.assert_close(averaged[c], per_sample[y == c].mean(0))


def test_absent_classes_give_nan_maps():
    model = mlp((4, 5, 3), "relu", seed=2)
    x = torch.randn(6, 4, dtype=torch.float64)
    y = [0, 3, 3, 0, 0, 3]   # classes 1 and 2 absent; a list works too
    averaged = characteristic_maps(model, x, "0", y=y)
    assert averaged.shape == (4, 5, 4)
    assert torch.isnan(averaged[1]).all() and torch.isnan(averaged[2]).all()
    assert torch.isfinite(averaged[[0, 3]]).all()
    wider = characteristic_maps(model, x, "0", y=torch.tensor(y), num_classes=6)
    assert wider.shape == (6, 5, 4) and torch.isnan(wider[4:]).all()
    torch.testing.assert_close(wider[:4], averaged, equal_nan=True)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 100])
def test_chunking_does_not_change_the_result(chunk_size):
    model = mlp((6, 8, 7, 3), "gelu", seed=9)
    x = torch.randn(11, 6, dtype=torch.float64)
    y = torch.arange(11) % 3
    for name in ("0", "2", "4"):
        torch.testing.assert_close(gated_radiograph(model, x, name, chunk_size=chunk_size),
                                   gated_radiograph(model, x, name), rtol=0, atol=1e-14)
        torch.testing.assert_close(characteristic_maps(model, x, name, y=y, chunk_size=chunk_size),
                                   characteristic_maps(model, x, name, y=y), rtol=1e-12, atol=1e-14)


# -- structures ------------------------------------------------------------------------------------------

class Tower(nn.Module):
    """A module tree whose forward calls its modules in registration order."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(12, 6), nn.ReLU())
        self.body = nn.ModuleDict({"fc": nn.Linear(6, 5), "act": nn.GELU(), "drop": nn.Dropout(0.3)})
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = self.stem(x)
        h = self.body["drop"](self.body["act"](self.body["fc"](h)))
        return self.head(h)


def test_pathway_layers_of_sequential_and_nested_trees():
    assert pathway_layers(mlp((3, 4, 4, 2))) == ["0", "2", "4"]
    assert pathway_layers(Tower()) == ["stem.2", "body.fc", "head"]
    nested = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()),
                           nn.Sequential(nn.Dropout(), nn.Sequential(nn.Linear(4, 2))))
    assert pathway_layers(nested) == ["0.0", "1.1.0"]


def test_nested_tree_with_flatten_and_dropout_matches_autograd_in_train_mode():
    model = Tower().double().train()    # Dropout must act as the identity (eval) inside
    x = torch.randn(4, 3, 4, dtype=torch.float64)
    got = gated_radiograph(model, x, "head")
    assert got.shape == (4, 3, 12)      # dense chain: the input dims are flattened
    with torch.no_grad():
        model.eval()
    expected = channel_sum_jacobian(model, x).reshape(4, 3, 12)
    torch.testing.assert_close(got, expected)
    assert static_radiograph(model, "body.fc").shape == (5, 12)


def test_shared_activation_module_and_inplace_relu():
    relu = nn.ReLU(inplace=True)
    model = nn.Sequential(nn.Linear(4, 5), relu, nn.Linear(5, 5), relu, nn.Linear(5, 2)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    before = x.clone()
    assert pathway_layers(model) == ["0", "2", "4"]
    model_copy = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) else m for m in model])
    torch.testing.assert_close(gated_radiograph(model, x, "4"), channel_sum_jacobian(model_copy, x))
    assert torch.equal(x, before)


def test_custom_parameter_free_elementwise_module_counts_as_activation():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(nn.Linear(3, 4), Swish(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    assert pathway_layers(model) == ["0", "2"]
    torch.testing.assert_close(gated_radiograph(model, x, "2"), channel_sum_jacobian(model, x))


def test_batchnorm_in_eval_is_a_diagonal_weight_layer():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(-2, 2)
    x = torch.randn(6, 4, dtype=torch.float64)
    model.train()
    got = gated_radiograph(model, x, "3")
    assert model.training and model[1].training
    model.eval()
    torch.testing.assert_close(got, channel_sum_jacobian(model, x))
    a = model[1].weight / torch.sqrt(model[1].running_var + model[1].eps)
    with torch.no_grad():
        w1, w3 = model[0].weight, model[3].weight
        torch.testing.assert_close(static_radiograph(model, "3"), w3 @ torch.diag(a) @ w1)
        torch.testing.assert_close(static_radiograph(model, "3", signed=False),
                                   w3.abs() @ torch.diag(a.abs()) @ w1.abs())


def test_unflatten_into_a_convolution_after_dense_layers():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Unflatten(1, (2, 4)), nn.Conv1d(2, 3, 2),
                          nn.Tanh(), nn.Flatten(), nn.Linear(9, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert pathway_layers(model) == ["0", "3", "6"]
    for name in ("3", "6"):
        torch.testing.assert_close(gated_radiograph(model, x, name),
                                   channel_sum_jacobian(sequential_prefix(model, name), x))


def test_same_results_under_no_grad_and_inference_mode():
    model = conv_model("conv2d-same-reflect-bn")
    x = conv_input("conv2d-same-reflect-bn")
    expected = gated_radiograph(model, x, "3"), static_radiograph(model, "3", signed=False,
                                                                    input_shape=x.shape[1:])
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            got = gated_radiograph(model, x, "3"), static_radiograph(model, "3", signed=False,
                                                                     input_shape=x.shape[1:])
        for g, e in zip(got, expected):
            assert torch.equal(g, e)


def test_max_pooling_is_a_selection_frozen_at_the_probe():
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8, 3)).double()
    assert pathway_layers(model) == ["0", "4"]
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    assert gated_radiograph(model, x, "0").shape == (2, 2, 1, 4, 4)
    torch.testing.assert_close(gated_radiograph(model, x, "4"), channel_sum_jacobian(model, x))
    with pytest.raises(ValueError, match=r"freezes factors that depend on the input "
                                         r"\(2:max_pool2d \(selection\)\): pass a probe batch x"):
        static_radiograph(model, "4", input_shape=(1, 4, 4))
    static = static_radiograph(model, "4", x=x)
    assert static.frozen == ("2:max_pool2d (selection)",)
    # every gate open, the max-pool's choice on each probe sample kept: the mean of the
    # Jacobians of the model without its ReLU
    linear = nn.Sequential(model[0], model[2], model[3], model[4])
    expected = torch.stack([channel_sum_jacobian(linear, x[b:b + 1])[0] for b in range(2)]).mean(0)
    torch.testing.assert_close(static, expected)


# -- convolutions ----------------------------------------------------------------------------------------

CONVS = {
    "conv2d": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2, dilation=1),
        nn.Tanh(), nn.Conv2d(4, 4, 1, groups=2), nn.GELU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)),
    "conv2d-same-reflect-bn": lambda: nn.Sequential(
        nn.Conv2d(2, 3, (2, 3), padding="same", padding_mode="reflect"), nn.BatchNorm2d(3),
        nn.LeakyReLU(0.2), nn.Conv2d(3, 2, 2, padding="same", dilation=2), nn.SiLU(),
        nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular", bias=False)),
    "conv3d": lambda: nn.Sequential(
        nn.Conv3d(1, 2, 2, padding=1), nn.ELU(), nn.Conv3d(2, 2, 2, stride=2), nn.Softplus(),
        nn.Flatten(), nn.Linear(2 * 2 * 2 * 2, 2)),
    "conv1d": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Conv1d(4, 3, 2, stride=2, padding=1), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(3 * 4, 2)),
}


def conv_model(kind):
    torch.manual_seed(11)
    model = CONVS[kind]().double()
    for m in model:
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def conv_input(kind, batch=3):
    shape = {"conv2d": (2, 7, 7), "conv3d": (1, 3, 4, 3), "conv1d": (2, 8)}[kind[:6]]
    return torch.randn(batch, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def weight_names(model):
    return [str(k) for k, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]


@pytest.mark.parametrize("kind", list(CONVS))
def test_conv_gated_radiographs_are_jacobians_of_channel_sums(kind):
    model, x = conv_model(kind), conv_input(kind)
    for name in weight_names(model):
        got = gated_radiograph(model, x, name)
        expected = channel_sum_jacobian(sequential_prefix(model, name), x)
        assert got.shape == expected.shape == (x.shape[0], expected.shape[1], *x.shape[1:])
        torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-12)
        maps = characteristic_maps(model, x, name)
        torch.testing.assert_close(maps, got * x[:, None])


@pytest.mark.parametrize("kind", list(CONVS))
@pytest.mark.parametrize("signed", [True, False])
def test_conv_static_radiographs_are_jacobians_of_the_linear_chain(kind, signed):
    """The sum of all pathway values = Jacobian of the chain with the activations removed (and
    |W|, |BatchNorm scale| for unsigned); biases do not matter in a Jacobian."""
    model, x = conv_model(kind), conv_input(kind, batch=1)
    linear = conv_model(kind)
    for k, m in enumerate(linear):
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.Flatten)):
            linear[k] = nn.Identity()
        elif not signed and getattr(m, "weight", None) is not None:
            with torch.no_grad():
                m.weight.abs_()
    for name in weight_names(model):
        got = static_radiograph(model, name, signed=signed, input_shape=x.shape[1:])
        expected = channel_sum_jacobian(sequential_prefix(linear, name), x)[0]
        torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-12)


def test_static_radiograph_of_a_single_conv_counts_each_positions_pathways():
    conv = nn.Conv1d(1, 1, 2, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[2.0, -3.0]]]))
    model = nn.Sequential(conv)
    # output positions p = 0..2 see inputs p, p+1: input 0 only via w0, input 3 only via w1
    got = static_radiograph(model, "0", input_shape=(1, 4))
    torch.testing.assert_close(got, torch.tensor([[[2.0, -1.0, -1.0, -3.0]]], dtype=torch.float64))
    got = static_radiograph(model, "0", signed=False, input_shape=(1, 4))
    torch.testing.assert_close(got, torch.tensor([[[2.0, 5.0, 5.0, 3.0]]], dtype=torch.float64))


# -- the model left as found ------------------------------------------------------------------------------

def prepared_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(6, 5), nn.PReLU(5), nn.Linear(5, 3)).train()
    model[1].eval()                          # mixed training flags must come back as they were
    model[4].weight.requires_grad_(False)    # a frozen layer
    model(torch.randn(8, 4)).sum().backward()    # some .grad present, one missing
    calls = []
    model[0].register_forward_hook(lambda m, i, o: calls.append(1))
    model.register_forward_pre_hook(lambda m, i: None)
    return model, calls


def test_every_function_leaves_the_model_as_found():
    model, calls = prepared_model()
    before = model_state(model)
    x, y = torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    pathway_layers(model)
    for signed in (True, False):
        static_radiograph(model, "6", signed=signed)
    gated_radiograph(model, x, "6")
    characteristic_maps(model, x, "4", y=y)
    characteristic_maps(model, x, "6")
    assert_unchanged(model, before)
    assert calls, "the model's forward (with its hooks) runs for the check"


@pytest.mark.parametrize("call", [
    lambda m: gated_radiograph(m, torch.randn(3, 5), "6"),          # x does not fit
    lambda m: characteristic_maps(m, torch.randn(3, 4), "6", y=[0, 1]),
    lambda m: gated_radiograph(m, torch.randn(3, 4), "2"),          # not a weight layer
    lambda m: static_radiograph(m, "6", input_shape=(7,)),
    lambda m: gated_radiograph(m, torch.randn(3, 4), "6", chunk_size=0),
])
def test_the_model_is_left_as_found_when_a_call_raises(call):
    model, _ = prepared_model()
    before = model_state(model)
    with pytest.raises((ValueError, TypeError)):
        call(model)
    assert_unchanged(model, before)


def test_model_is_left_as_found_with_functional_activations_and_residual_sums():
    model = Residual().train()
    before = model_state(model)
    x = torch.randn(5, 4)
    gated_radiograph(model, x, "fc2")
    static_radiograph(model, "fc2", signed=False)
    characteristic_maps(model, x, "fc1", y=[0, 1, 0, 1, 1])
    assert_unchanged(model, before)


# -- beyond chains (brute force on residual nets: test_architectures.py) ---------------------------------

class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class OutOfOrder(nn.Module):
    def __init__(self):
        super().__init__()
        self.second, self.act, self.first = nn.Linear(4, 2), nn.Tanh(), nn.Linear(3, 4)

    def forward(self, x):
        return self.second(self.act(self.first(x)))


class Tuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x), x


def test_functional_activations_are_gates_never_linear():
    """A functional ReLU is seen: the gated radiograph is the Jacobian, the static one opens its
    gates (W2 W1)."""
    torch.manual_seed(1)
    model = FunctionalRelu().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(gated_radiograph(model, x, "fc2"), channel_sum_jacobian(model, x))
    with torch.no_grad():
        w1, w2 = model.fc1.weight, model.fc2.weight
        torch.testing.assert_close(static_radiograph(model, "fc2"), w2 @ w1)
        torch.testing.assert_close(static_radiograph(model, "fc2", signed=False), w2.abs() @ w1.abs())
    assert static_radiograph(model, "fc2").frozen == ()


def layer_jacobian(model, x, layer):
    """Autograd Jacobian of module ``layer``'s output (channel sums) inside the whole model."""
    module = dict(model.named_modules())[layer]
    outputs = []
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        def run(v):
            outputs.clear()
            model(v)
            return outputs[0]
        return channel_sum_jacobian(run, x)
    finally:
        handle.remove()


@pytest.mark.parametrize("model,x,layer", [
    (Residual(), torch.randn(3, 4), "fc2"), (OutOfOrder(), torch.randn(3, 3), "second"),
    (Tuple(), torch.randn(3, 3), "fc")])
def test_residual_out_of_order_and_tuple_forwards_are_jacobians(model, x, layer):
    model, x = model.double(), x.double()
    torch.testing.assert_close(gated_radiograph(model, x, layer), layer_jacobian(model, x, layer))


@pytest.mark.parametrize("call,error,match", [
    (lambda: pathway_layers("model"), TypeError, "expected a torch.nn.Module"),
    (lambda: pathway_layers(nn.Sequential(nn.ReLU(), nn.Tanh())), ValueError, "nothing to analyse"),
    (lambda: static_radiograph(mlp((3, 4, 2)), "9"), ValueError, r"no module named '9'.*\['0', '2'\]"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(2, 3), "nope"), ValueError, "no module named 'nope'"),
    (lambda: static_radiograph(mlp((3, 4, 2)), "1"), ValueError, r"'1' \(ReLU\) is not a weight layer"),
    (lambda: static_radiograph(mlp((3, 4, 2)), 0), TypeError, "layer must be a module name"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(2, 5), "2"), ValueError,
     r"x \(\(2, 5\) float64\) does not fit the model Sequential \(RuntimeError: mat1"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(3), "2"), ValueError, "must be a batch"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(0, 3), "2"), ValueError, "empty batch"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), "abc", "2"), TypeError, "tensor or array"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(2, 3), "2", chunk_size=0), ValueError,
     "chunk_size must be a positive int"),
    (lambda: characteristic_maps(mlp((3, 4, 2)), torch.randn(4, 3), "2", y=[0, 1]), ValueError,
     r"one label per sample: shape \(4,\)"),
    (lambda: characteristic_maps(mlp((3, 4, 2)), torch.randn(2, 3), "2", y=[0.0, 1.0]), ValueError,
     "integer class labels"),
    (lambda: characteristic_maps(mlp((3, 4, 2)), torch.randn(2, 3), "2", y=[0, -1]), ValueError,
     "label -1"),
    (lambda: characteristic_maps(mlp((3, 4, 2)), torch.randn(2, 3), "2", y=[0, 4], num_classes=3),
     ValueError, "num_classes=3 but y holds the label 4"),
    (lambda: characteristic_maps(mlp((3, 4, 2)), torch.randn(2, 3), "2", num_classes=3),
     ValueError, "num_classes is given without labels"),
    (lambda: static_radiograph(conv_model("conv1d"), "0"), ValueError,
     r"Conv1d\) leaves the input size open: pass x \(a probe batch\) or input_shape"),
    (lambda: static_radiograph(mlp((3, 4, 2)), "0", input_shape=(0,)), ValueError, "input_shape must"),
    (lambda: static_radiograph(mlp((3, 4, 2)), "0", input_shape=(5,)), ValueError,
     r"a zero input of shape \(5,\) \(\(1, 5\) float64\) does not fit the model Sequential"),
    (lambda: static_radiograph(mlp((3, 4, 2)), "0", input_shape="ab"), TypeError, "input_shape must be"),
    (lambda: static_radiograph(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2)), "2"),
     ValueError, r"freezes factors that depend on the input \(1:layer_norm \(scale\)\): pass a probe"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(2, 3), "2", units=[5]), ValueError,
     r"units \[5\] out of range: layer '2' has 2 units"),
    (lambda: gated_radiograph(mlp((3, 4, 2)), torch.randn(2, 3), "2", units=0), ValueError,
     "units must be a positive count"),
    (lambda: gated_radiograph(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False),
                                            nn.Linear(3, 2)), torch.randn(2, 3), "2"), ValueError,
     "normalises with batch statistics even in eval mode"),
    (lambda: pathway_layers(nn.Sequential(nn.LazyLinear(3))), ValueError, "uninitialised lazy"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_container_with_own_parameters_and_a_non_elementwise_module():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.fc(x) * self.scale

    class Centre(nn.Module):
        def forward(self, x):
            return x - x.mean(dim=1, keepdim=True)

    assert pathway_layers(Scaled()) == ["fc"]
    model = nn.Sequential(nn.Linear(3, 4), Centre(), nn.Linear(4, 2)).double()
    assert pathway_layers(model) == ["0", "2"]
    centre = torch.eye(4, dtype=torch.float64) - 0.25
    with torch.no_grad():
        static = static_radiograph(model, "2")
        torch.testing.assert_close(static, model[2].weight @ centre @ model[0].weight)
    assert static.frozen == ()      # subtracting the mean is linear: nothing frozen


def test_softmax_and_layernorm_are_frozen_and_named():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 3), nn.Softmax(dim=1),
                          nn.Linear(3, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(gated_radiograph(model, x, "4"), channel_sum_jacobian(model, x))
    static = static_radiograph(model, "4", x=x)
    assert static.frozen == ("1:layer_norm (scale)", "3:softmax (attention pattern)")
    # the softmax frozen: nothing reaches layer 4 through it
    torch.testing.assert_close(static, torch.zeros_like(static))
    # layer 2 through the LayerNorm with its scale frozen per sample: W2 diag(g / std_b) C W0
    with torch.no_grad():
        z0 = model[0](x)
        std = torch.sqrt(z0.var(1, unbiased=False) + model[1].eps)
        centre = torch.eye(3, dtype=torch.float64) - 1 / 3
        per_sample = [model[2].weight @ torch.diag(model[1].weight / s) @ centre @ model[0].weight
                      for s in std]
    torch.testing.assert_close(static_radiograph(model, "2", x=x), torch.stack(per_sample).mean(0))


def test_results_are_fresh_tensors_on_the_weights_device_and_dtype():
    model = mlp((3, 4, 2), dtype=torch.float32)
    x = torch.randn(2, 3, dtype=torch.float64)    # converted to the weights' dtype
    r = gated_radiograph(model, x, "0")
    assert r.dtype == torch.float32 and not r.requires_grad
    r += 1.0
    s = static_radiograph(model, "0")
    s += 1.0                                        # never a view of the weight
    assert torch.equal(model[0].weight, mlp((3, 4, 2), dtype=torch.float32)[0].weight)

