"""Mode decomposition learning (SPEC 4.5): ModeLinear against explicit sums over modes, its
gradients by finite differences, its init, and model conversion with to_mode_model."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets import ModeLinear, to_mode_model



def ref_weight(layer: ModeLinear) -> np.ndarray:
    """sum_mu lam_mu xi_mu xi_hat_mu^T, mode by mode, in float64."""
    xi, lam, xi_hat = (p.detach().double().numpy() for p in (layer.xi, layer.lam, layer.xi_hat))
    w = np.zeros((layer.out_features, layer.in_features))
    for mu in range(layer.modes):
        w += lam[mu] * np.outer(xi[:, mu], xi_hat[:, mu])
    return w


# -- ModeLinear ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_parameter_count_and_shapes(bias):
    layer = ModeLinear(30, 20, 7, bias=bias)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    expected = {"xi": (20, 7), "lam": (7,), "xi_hat": (30, 7)} | ({"bias": (20,)} if bias else {})
    assert shapes == expected
    assert sum(p.numel() for p in layer.parameters()) == 7 * (30 + 20 + 1) + (20 if bias else 0)
    assert all(p.requires_grad for p in layer.parameters())
    assert layer.weight.shape == (20, 30)
    assert repr(layer) == f"ModeLinear(in_features=30, out_features=20, modes=7, bias={bias})"


def test_weight_is_the_sum_over_modes():
    torch.manual_seed(0)
    layer = ModeLinear(9, 4, 6).double()
    np.testing.assert_allclose(layer.weight.detach().numpy(), ref_weight(layer), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("in_f,out_f,modes,rows", [
    (50, 50, 3, 1),        # through the modes (few modes)
    (4, 4, 100, 1000),     # forming the weight first (many modes, many rows)
    (8, 5, 5, 7),
])
def test_forward_equals_x_weight_t_plus_bias(in_f, out_f, modes, rows):
    torch.manual_seed(1)
    layer = ModeLinear(in_f, out_f, modes, bias=True).double()
    x = torch.randn(rows, in_f, dtype=torch.float64)
    expected = x.numpy() @ ref_weight(layer).T + layer.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    # leading batch dimensions, and a single vector
    x3 = torch.randn(2, 3, in_f, dtype=torch.float64)
    np.testing.assert_allclose(layer(x3).detach().numpy(),
                               x3.numpy() @ ref_weight(layer).T + layer.bias.detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    assert layer(x[0]).shape == (out_f,)


def test_gradients_flow_to_every_factor_and_match_finite_differences():
    torch.manual_seed(2)
    for modes, rows in ((2, 5), (9, 40)):      # both forward paths
        layer = ModeLinear(3, 2, modes, bias=True).double()
        x = torch.randn(rows, 3, dtype=torch.float64, requires_grad=True)
        names = [n for n, _ in layer.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())

        def f(x, *values):
            return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

        assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7)
    layer = ModeLinear(6, 4, 3)
    layer(torch.randn(10, 6)).square().sum().backward()
    for name in ("xi", "lam", "xi_hat"):
        grad = getattr(layer, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_default_init_statistics():
    torch.manual_seed(3)
    layer = ModeLinear(1000, 400, 300)
    scale = (1000 * math.log(1000)) ** (-1 / 6)
    assert layer.init_scale == pytest.approx(scale)
    entries = torch.cat([layer.xi.flatten(), layer.lam, layer.xi_hat.flatten()]).double()
    assert entries.std().item() == pytest.approx(scale, rel=0.01)
    assert abs(entries.mean().item()) < 0.01 * scale
    for p in (layer.xi, layer.xi_hat):        # every factor, not just the pool
        assert p.std().item() == pytest.approx(scale, rel=0.02)
    assert layer.lam.std().item() == pytest.approx(scale, rel=0.15)
    # in_features == 1: ln 1 = 0, so the scale is taken as 1 instead of infinity
    tiny = ModeLinear(1, 3, 2)
    assert tiny.init_scale == 1.0 and torch.isfinite(tiny.weight).all()
    # a bias starts as nn.Linear's does
    with_bias = ModeLinear(100, 50, 4, bias=True)
    assert with_bias.bias.abs().max() <= 0.1 and with_bias.bias.abs().max() > 0.05


def test_mode_importance_against_a_manual_computation():
    torch.manual_seed(4)
    layer = ModeLinear(5, 3, 4).double()
    xi, lam, xi_hat = (p.detach().numpy() for p in (layer.xi, layer.lam, layer.xi_hat))
    norms = [math.sqrt(sum(xi[i, mu] ** 2 for i in range(3))) +
             math.sqrt(sum(xi_hat[j, mu] ** 2 for j in range(5))) for mu in range(4)]
    gamma = (sum(abs(v) for v in lam) / 4) / (sum(norms) / 4)
    expected = [abs(lam[mu]) + gamma * norms[mu] for mu in range(4)]
    tau = layer.mode_importance()
    assert not tau.requires_grad and tau.shape == (4,)
    np.testing.assert_allclose(tau.numpy(), expected, rtol=1e-12)
    with torch.no_grad():     # all patterns zero: gamma = 0, tau = |lam|
        layer.xi.zero_()
        layer.xi_hat.zero_()
    np.testing.assert_allclose(layer.mode_importance().numpy(), np.abs(lam), rtol=0)


def test_mode_linear_bad_input():
    for kw, error, message in [
        (dict(modes=0), ValueError, "modes must be >= 1, got 0"),
        (dict(modes=-2), ValueError, "modes must be >= 1"),
        (dict(modes=2.5), TypeError, "modes must be an int, got float"),
        (dict(modes=True), TypeError, "modes must be an int, got bool"),
        (dict(in_features=0), ValueError, "in_features must be >= 1"),
        (dict(out_features=0), ValueError, "out_features must be >= 1"),
        (dict(bias=1), TypeError, "bias must be True or False"),
    ]:
        args = dict(in_features=4, out_features=3, modes=2) | kw
        with pytest.raises(error, match=message):
            ModeLinear(args.pop("in_features"), args.pop("out_features"), args.pop("modes"), **args)
    with pytest.raises(ValueError, match=r"inputs \[\.\.\., 4\], got \(2, 5\)"):
        ModeLinear(4, 3, 2)(torch.randn(2, 5))


# -- to_mode_model -------------------------------------------------------------------------------

class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(12, 9), nn.Tanh(),
                                      nn.ModuleList([nn.Linear(9, 9), nn.Linear(9, 7, bias=False)]))
        self.heads = nn.ModuleDict({"a": nn.Linear(7, 3), "b": nn.Linear(7, 2)})
        self.norm = nn.LayerNorm(7)

    def forward(self, x):
        h = self.features[1](self.features[0](x))
        for layer in self.features[2]:
            h = torch.relu(layer(h))
        h = self.norm(h)
        return torch.cat([self.heads["a"](h), self.heads["b"](h)], dim=-1)


def linear_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("modes", [1, 3, 100])
def test_svd_init_gives_the_rank_p_truncation_of_every_layer(modes):
    torch.manual_seed(5)
    model = Nested().double()
    before = state_of(model)
    converted = to_mode_model(model, modes)
    assert converted is not model
    for name, linear in linear_layers(model).items():
        layer = converted.get_submodule(name)
        assert isinstance(layer, ModeLinear)
        p = min(modes, linear.in_features, linear.out_features)
        assert layer.modes == p
        u, s, vh = np.linalg.svd(linear.weight.detach().numpy(), full_matrices=False)
        np.testing.assert_allclose(layer.weight.detach().numpy(), (u[:, :p] * s[:p]) @ vh[:p],
                                   atol=1e-12)
        if linear.bias is None:
            assert layer.bias is None
        else:
            assert torch.equal(layer.bias, linear.bias) and layer.bias is not linear.bias
    # the original is untouched: same modules, same values
    assert all(type(m) is nn.Linear for m in linear_layers(model).values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # non-linear modules are copied, not shared
    assert torch.equal(converted.norm.weight, model.norm.weight) and converted.norm is not model.norm
    if modes == 100:          # full rank: the same function
        x = torch.randn(16, 12, dtype=torch.float64)
        torch.testing.assert_close(converted(x), model(x), rtol=1e-10, atol=1e-12)


def test_full_rank_conversion_of_a_float32_mlp_reproduces_its_outputs():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    x = torch.randn(64, 20)
    converted = to_mode_model(model, 30)
    assert [m.modes for m in converted if isinstance(m, ModeLinear)] == [20, 5]
    assert converted[0].xi.dtype == torch.float32
    torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)


def test_random_init_flags_dtype_and_sharing_are_preserved():
    torch.manual_seed(7)
    shared = nn.Linear(6, 6)
    model = nn.Sequential(nn.Linear(4, 6), shared, nn.ReLU(), shared, nn.Linear(6, 2)).double()
    model[0].weight.requires_grad_(False)
    model[4].bias.requires_grad_(False)
    model.eval()
    model[4].train()
    converted = to_mode_model(model, 3, init="random")
    assert converted[1] is converted[3], "a module used twice stays one module"
    assert isinstance(converted[2], nn.ReLU)
    for i in (0, 1, 4):
        layer = converted[i]
        assert isinstance(layer, ModeLinear) and layer.modes == min(3, model[i].out_features)
        assert layer.xi.dtype == torch.float64 and layer.xi.device == model[i].weight.device
        assert layer.training == model[i].training
        assert torch.equal(layer.bias, model[i].bias)
        # the default init, not the weights' factors
        assert layer.lam.abs().max() < 5 * layer.init_scale
    assert not any(p.requires_grad for p in (converted[0].xi, converted[0].lam, converted[0].xi_hat))
    assert converted[0].bias.requires_grad and not converted[4].bias.requires_grad
    assert converted[4].lam.requires_grad
    assert sum(p.numel() for p in converted.parameters()) == \
        3 * (4 + 6 + 1) + 6 + 3 * (6 + 6 + 1) + 6 + 2 * (6 + 2 + 1) + 2


def test_a_linear_model_converts_to_a_mode_linear():
    linear = nn.Linear(5, 4, bias=False)
    layer = to_mode_model(linear, 2)
    assert isinstance(layer, ModeLinear) and layer.modes == 2 and layer.bias is None
    assert isinstance(linear, nn.Linear)


def test_to_mode_model_bad_input():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="modes must be >= 1, got 0"):
        to_mode_model(model, 0)
    with pytest.raises(TypeError, match="modes must be an int"):
        to_mode_model(model, "4")
    with pytest.raises(ValueError, match="unknown init 'pca'; choose one of 'svd', 'random'"):
        to_mode_model(model, 2, init="pca")
    with pytest.raises(ValueError, match="Sequential has no nn.Linear layer to convert"):
        to_mode_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), 2)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        to_mode_model(torch.zeros(2, 2), 2)
    broken = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        broken[2].weight[0, 1] = math.inf
    before = state_of(broken)
    with pytest.raises(ValueError, match="layer '2' has non-finite weights"):
        to_mode_model(broken, 2)
    for k, v in broken.state_dict().items():
        assert torch.equal(v, before[k])
    assert isinstance(to_mode_model(broken, 2, init="random")[2], ModeLinear)


def test_a_digits_mlp_trained_in_mode_space_reaches_high_accuracy():
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1350], perm[1350:]
    torch.manual_seed(0)
    model = to_mode_model(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), 16,
                          init="random")
    assert [m.modes for m in model if isinstance(m, ModeLinear)] == [16, 10]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 16 * (64 + 128 + 1) + 128 + 10 * (128 + 10 + 1) + 10   # vs 9610 in weights
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        order = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), 64):
            batch = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc > 0.9, acc


def test_public_names():
    assert nm.ModeLinear is ModeLinear and nm.to_mode_model is to_mode_model
    assert {"ModeLinear", "to_mode_model"} <= set(nm.__all__)
    assert {"mode_spectrum", "Spectrum", "fit_power_law", "PowerLawFit",
            "mode_truncation_curve"} <= set(nm.analysis.__all__)
