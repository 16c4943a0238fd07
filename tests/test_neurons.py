"""Neuron transformation modes (SPEC 4.3; Lin et al., arXiv 2501.02436): neurons built by hand to
be linear, dead or nonlinear; order preservation against an explicit count of all pairs; the
transmitting region of non-monotone activations; classes; convolutions; what is refused; the
model left as found."""

import math

import pytest
import torch
from torch import nn

from nnmodes_widgets.analysis import NeuronModes, neuron_modes
from nnmodes_widgets.analysis.neurons import MODES, order_preservation

from modelstate import assert_unchanged, model_state  # tests/modelstate.py



# -- brute force ---------------------------------------------------------------------------------------

def pairs_kept(z, h):
    """Explicit O(N^2) count: among the pairs with z_a != z_b, the share whose outputs keep the
    same strict order (output ties are not kept)."""
    z, h = z.tolist(), h.tolist()
    kept = total = 0
    for a in range(len(z)):
        for b in range(a + 1, len(z)):
            if z[a] == z[b]:
                continue
            total += 1
            if (z[a] < z[b] and h[a] < h[b]) or (z[a] > z[b] and h[a] > h[b]):
                kept += 1
    return kept / total if total else math.nan


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


def linear_with(weight, bias):
    layer = nn.Linear(len(weight[0]), len(weight)).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return layer


def nonzero_line(n):
    """n distinct values in [-1, 1], half of them negative, none zero."""
    half = torch.arange(1, n // 2 + 1, dtype=torch.float64) / (n // 2)
    return torch.cat([-half.flip(0), half]).reshape(-1, 1)


# -- modes of neurons built by hand --------------------------------------------------------------------------

def test_always_never_and_half_active_neurons_are_linear_dead_and_nonlinear():
    model = nn.Sequential(linear_with([[0.0], [0.0], [1.0]], [1.0, -1.0, 0.0]), nn.ReLU(),
                          nn.Linear(3, 1).double())
    x = nonzero_line(20)                     # z_2 = x: 10 negative, 10 positive
    modes = neuron_modes(model, x)
    assert list(modes) == ["0"]
    m = modes["0"]
    assert isinstance(m, NeuronModes) and m.layer == "0" and m.activation == "1"
    assert m.active_fraction.tolist() == [1.0, 0.0, 0.5]
    assert m.mode == ("linear", "dead", "nonlinear")
    assert m.mode_code.tolist() == [MODES.index("linear"), MODES.index("dead"), MODES.index("nonlinear")]
    assert m.fractions == pytest.approx({"linear": 1 / 3, "nonlinear": 1 / 3, "dead": 1 / 3})
    assert m.n_samples == 20 and m.class_active_fraction is None
    # constant z: no pair with z_a != z_b; the half-clipped neuron keeps all but the clipped pairs
    op = m.order_preservation.tolist()
    assert math.isnan(op[0]) and math.isnan(op[1])
    assert op[2] == pytest.approx(1 - math.comb(10, 2) / math.comb(20, 2), abs=1e-15)
    assert m.threshold.tolist() == pytest.approx([0.05] * 3)


@pytest.mark.parametrize("active,mode", [(20, "linear"), (19, "linear"), (18, "nonlinear"),
                                         (2, "nonlinear"), (1, "dead"), (0, "dead")])
def test_mode_boundaries_at_eps(active, mode):
    x = torch.arange(20, dtype=torch.float64).reshape(-1, 1)
    model = nn.Sequential(linear_with([[1.0]], [0.5 - (20 - active)]), nn.ReLU())
    m = neuron_modes(model, x, eps=0.05)["0"]
    assert m.active_fraction.item() == active / 20
    assert m.mode == (mode,)


def test_eps_and_delta_change_the_modes():
    x = torch.arange(20, dtype=torch.float64).reshape(-1, 1)
    model = nn.Sequential(linear_with([[1.0]], [-1.5]), nn.ReLU())   # 18 of 20 active
    assert neuron_modes(model, x)["0"].mode == ("nonlinear",)
    assert neuron_modes(model, x, eps=0.1)["0"].mode == ("linear",)
    # sigmoid: max s' = 1/4 at 0; with delta = 0.05, s'(4) = 0.0177 transmits, s'(5) = 0.0066 not
    sig = nn.Sequential(linear_with([[1.0]], [0.0]), nn.Sigmoid())
    m = neuron_modes(sig, torch.tensor([[4.0], [5.0], [-4.0], [-5.0]], dtype=torch.float64))["0"]
    assert m.threshold.item() == pytest.approx(0.05 * 0.25, rel=1e-9)
    assert m.active_fraction.item() == 0.5
    m = neuron_modes(sig, torch.tensor([[4.0], [5.0]], dtype=torch.float64), delta=0.8)["0"]
    assert m.active_fraction.item() == 0.0     # 0.8 * 0.25 = 0.2 > s'(4)


@pytest.mark.parametrize("act,slope_at,negative", [
    (nn.GELU, lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
     [-1.5, -2.0]),
    (nn.SiLU, lambda z: (s := 1 / (1 + math.exp(-z))) * (1 + z * (1 - s)), [-2.0, -3.0]),
])
def test_the_negative_slope_region_of_non_monotone_activations_is_not_transmitting(act, slope_at, negative):
    grid = [i / 10000 for i in range(-100000, 100001)]
    top = max(slope_at(z) for z in grid)
    z = negative + [2.0, 3.0]
    # the slopes at the negative points are negative yet larger in size than delta * max s'
    assert all(slope_at(v) < 0 and abs(slope_at(v)) > 0.05 * top for v in z[:2])
    model = nn.Sequential(linear_with([[1.0]], [0.0]), act())
    m = neuron_modes(model, torch.tensor(z, dtype=torch.float64).reshape(-1, 1))["0"]
    assert m.threshold.item() == pytest.approx(0.05 * top, rel=1e-6)
    assert m.active_fraction.item() == 0.5
    # order: GELU / SiLU fall on the negative side, rise on the positive side
    assert m.order_preservation.item() == pytest.approx(pairs_kept(torch.tensor(z), act()(torch.tensor(z))))


def test_prelu_thresholds_are_per_neuron():
    prelu = nn.PReLU(3).double()
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
    model = nn.Sequential(linear_with([[1.0], [1.0], [1.0]], [0.0, 0.0, 0.0]), prelu)
    m = neuron_modes(model, nonzero_line(10))["0"]
    assert m.threshold.tolist() == pytest.approx([0.05, 0.1, 0.05])
    # negative side: slope 0.5 and 2 transmit, slope -1 reverses order: not transmitting
    assert m.active_fraction.tolist() == [1.0, 1.0, 0.5]
    assert prelu.weight.grad is None


# -- order preservation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.GELU, nn.Tanh])
@pytest.mark.parametrize("ties", [False, True])
def test_order_preservation_against_an_explicit_pair_count(act, ties):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 6), act(), nn.Linear(6, 2)).double()
    x = torch.randn(37, 3, dtype=torch.float64)
    if ties:
        x = torch.cat([x, x[:9]]).round(decimals=1)    # repeated samples: z ties
    m = neuron_modes(model, x)["0"]
    with torch.no_grad():
        z = model[0](x)
        h = model[1](z.clone())
    for k in range(6):
        assert same(m.order_preservation[k].item(), pairs_kept(z[:, k], h[:, k])), k


@pytest.mark.parametrize("n_samples", [1, 2, 3, 5, 16, 17, 64, 100])
@pytest.mark.parametrize("budget", [1, 10**9])
def test_order_preservation_function_with_ties_and_padding(n_samples, budget):
    g = torch.Generator().manual_seed(n_samples)
    # monotone (sort only), a single dip (closed form) and anything else (merge count)
    fns = [torch.relu, lambda v: v.clamp(-1, 1), torch.tanh, lambda v: (v - 1) ** 2, lambda v: -v,
           lambda v: -(v - 1) ** 2, lambda v: torch.sin(1.3 * v), lambda v: v.round() % 3]
    z = torch.randint(-3, 4, (len(fns), n_samples), generator=g).double()      # many z ties
    z[1::2] += torch.rand(z[1::2].shape, generator=g, dtype=torch.float64)     # and few
    h = torch.stack([f(z[k]) for k, f in enumerate(fns)])    # output ties, folds, reversal
    got = order_preservation(z, h, budget=budget)
    assert got.dtype == torch.float64 and got.shape == (len(fns),)
    for k in range(len(fns)):
        assert same(got[k].item(), pairs_kept(z[k], h[k])), (k, got[k].item())


def test_output_ties_count_as_not_kept():
    z = torch.tensor([[1.0, 2.0, 3.0], [20.0, 21.0, 22.0]])
    h = torch.stack([torch.tensor([0.0, 0.0, 1.0]), torch.tanh(z[1])])    # tanh saturates to 1.0
    assert torch.tanh(z[1]).unique().numel() == 1
    assert order_preservation(z, h).tolist() == pytest.approx([2 / 3, 0.0])


def test_relu_clipping_a_share_q_keeps_about_one_minus_q_squared():
    n, clipped = 200, 60                          # q = 0.3
    x = torch.cat([-torch.arange(1, clipped + 1), torch.arange(1, n - clipped + 1)]).double().reshape(-1, 1)
    model = nn.Sequential(linear_with([[1.0]], [0.0]), nn.ReLU())
    op = neuron_modes(model, x)["0"].order_preservation.item()
    assert op == pytest.approx(1 - math.comb(clipped, 2) / math.comb(n, 2), abs=1e-15)
    assert op == pytest.approx(1 - 0.3 ** 2, abs=0.005)


@pytest.mark.parametrize("act", [lambda: nn.LeakyReLU(0.01), nn.Tanh, nn.Sigmoid, nn.ELU, nn.Softplus])
def test_monotone_activations_without_clipping_keep_every_order(act):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 8), act()).double()
    m = neuron_modes(model, torch.randn(50, 4, dtype=torch.float64))["0"]
    assert m.order_preservation.tolist() == [1.0] * 8


def test_order_preservation_of_many_samples_is_fast_and_exact():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 50_000, generator=g, dtype=torch.float64)     # 1.25e9 pairs per neuron
    got = order_preservation(z, torch.relu(z), budget=2**24)
    clipped = (z <= 0).sum(dim=1).double()
    n = z.shape[1]
    expected = 1 - clipped * (clipped - 1) / (n * (n - 1))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


# -- classes -------------------------------------------------------------------------------------------------

def test_class_active_fraction_against_a_manual_computation():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    y[y == 1] = 4                                # classes 1 and 3 absent
    modes = neuron_modes(model, x, y=y)
    assert list(modes) == ["0", "2"]
    with torch.no_grad():
        zs = {"0": model[0](x), "2": model[2](model[1](model[0](x)))}
    for name, z in zs.items():
        got = modes[name].class_active_fraction
        assert got.shape == (5, z.shape[1])
        for c in range(5):
            if (y == c).any():
                torch.testing.assert_close(got[c], (z[y == c] > 0).double().mean(0))
            else:
                assert torch.isnan(got[c]).all()
        torch.testing.assert_close(modes[name].active_fraction, (z > 0).double().mean(0))
    assert neuron_modes(model, x, y=y, num_classes=7)["0"].class_active_fraction.shape == (7, 5)


# -- convolutions, keys ---------------------------------------------------------------------------------------

def test_conv_channels_count_every_position_as_a_sample():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 2, stride=2), nn.GELU()).double()
    x = torch.randn(4, 2, 7, 7, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    modes = neuron_modes(model, x, y=y)
    assert list(modes) == ["0", "2"]
    with torch.no_grad():
        z = model[0](x)                      # [4, 3, 5, 5]
        h = model[1](z)
    m = modes["0"]
    assert m.n_samples == 4 * 5 * 5
    torch.testing.assert_close(m.active_fraction, (z > 0).double().mean(dim=(0, 2, 3)))
    for c in range(2):
        torch.testing.assert_close(m.class_active_fraction[c], (z[y == c] > 0).double().mean(dim=(0, 2, 3)))
    for k in range(3):
        assert same(m.order_preservation[k].item(), pairs_kept(z[:, k].flatten(), h[:, k].flatten()))
    assert modes["2"].n_samples == 4 * 2 * 2


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 3, 3), nn.BatchNorm1d(3), nn.ReLU(),
                                      nn.Conv1d(3, 2, 2), nn.Dropout(0.2), nn.Tanh())
        self.flat = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(2 * 5, 4), nn.ReLU(), nn.Linear(4, 3))

    def forward(self, x):
        return self.classifier(self.flat(self.features(x)))


def test_keys_are_weight_layer_names_and_z_is_the_activation_input():
    torch.manual_seed(5)
    model = Net().double()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-1, 1)
        model.features[1].running_var.uniform_(0.5, 2)
    x = torch.randn(6, 1, 8, dtype=torch.float64)
    modes = neuron_modes(model, x)
    assert list(modes) == ["features.0", "features.3", "classifier.0"]
    assert modes["features.0"].activation == "features.2"
    model.eval()
    with torch.no_grad():
        z = model.features[1](model.features[0](x))      # after BatchNorm: what ReLU transforms
    torch.testing.assert_close(modes["features.0"].active_fraction, (z > 0).double().mean(dim=(0, 2)))


def test_shared_inplace_activation_and_probe_untouched():
    relu = nn.ReLU(inplace=True)
    model = nn.Sequential(nn.Linear(3, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2)).double()
    x = torch.randn(9, 3, dtype=torch.float64)
    before = x.clone()
    modes = neuron_modes(model, x)
    assert list(modes) == ["0", "2"] and torch.equal(x, before)
    with torch.no_grad():
        z = model[0](x)
    torch.testing.assert_close(modes["0"].active_fraction, (z > 0).double().mean(0))


# -- the model left as found, bad input -------------------------------------------------------------------------

def prepared_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(6, 5), nn.PReLU(5), nn.Linear(5, 3)).train()
    model[5].eval()
    model[0].bias.requires_grad_(False)
    model(torch.randn(8, 4)).sum().backward()
    model[2].register_forward_hook(lambda m, i, o: None)
    return model


def test_neuron_modes_leave_the_model_as_found():
    model = prepared_model()
    before = model_state(model)
    modes = neuron_modes(model, torch.randn(10, 4), y=torch.arange(10) % 3)
    assert list(modes) == ["0", "4"]
    assert_unchanged(model, before)


@pytest.mark.parametrize("kwargs", [dict(x=torch.randn(3, 7)), dict(eps=0.7), dict(y=[0, 1])])
def test_neuron_modes_leave_the_model_as_found_when_they_raise(kwargs):
    model = prepared_model()
    before = model_state(model)
    kwargs = {"x": torch.randn(3, 4), **kwargs}
    with pytest.raises(ValueError):
        neuron_modes(model, **kwargs)
    assert_unchanged(model, before)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("model,x,kwargs,error,match", [
    (nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3), {}, ValueError,
     "nothing to analyse: Sequential's forward calls no elementwise activation"),
    (nn.LSTM(3, 4), torch.randn(4, 2, 3), {}, ValueError,
     r"nothing to analyse.*<model>: LSTM: its gates \(sigmoid, tanh\) run inside one fused"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 5), {}, ValueError,
     r"the probe x \(\(4, 5\) float32\) does not fit the model Sequential \(RuntimeError: mat1"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(0, 3), {}, ValueError, "empty batch"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(eps=0.5), ValueError,
     r"eps must be in \[0, 0.5\)"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(eps=-0.1), ValueError, "eps must"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(delta=0), ValueError,
     r"delta must be in \(0, 1\]"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(delta="a"), ValueError, "delta must"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(y=[0, 1, 2]), ValueError,
     "one label per sample"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(4, 3), dict(num_classes=2), ValueError,
     "without labels"),
    ("not a model", torch.randn(4, 3), {}, TypeError, "expected a torch.nn.Module"),
])
def test_bad_input_gets_a_clear_error(model, x, kwargs, error, match):
    with pytest.raises(error, match=match):
        neuron_modes(model, x, **kwargs)


def test_functional_activations_count_like_modules():
    torch.manual_seed(3)
    model, x = Functional(), torch.randn(40, 3)
    modes = neuron_modes(model, x)
    assert list(modes) == ["relu#0"] and modes["relu#0"].activation == "relu#0"
    with torch.no_grad():
        z = model.fc1(x)
    torch.testing.assert_close(modes["relu#0"].active_fraction, (z > 0).double().mean(0))


def test_non_finite_preactivations_are_reported_with_the_layer():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU())
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="activation '2' has non-finite inputs on the probe"):
        neuron_modes(model, torch.randn(4, 3))


def test_same_modes_under_no_grad_and_inference_mode():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv1d(1, 3, 3), nn.GELU(), nn.Flatten(), nn.Linear(18, 4), nn.PReLU(4))
    x, y = torch.randn(5, 1, 8), torch.tensor([0, 1, 0, 1, 1])
    expected = neuron_modes(model, x, y=y)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            got = neuron_modes(model, x, y=y)
        for name in expected:
            for field in ("active_fraction", "order_preservation", "class_active_fraction", "threshold"):
                assert torch.equal(getattr(got[name], field), getattr(expected[name], field))
            assert got[name].mode == expected[name].mode
