"""Attraction basins, sharpness and weight alignment (SPEC 4.6): sample basins against the
closed form of a linear classifier, weight basins' invariance to rescaling a ReLU layer,
sharpness against the exact Hessian, alignment against a double loop of cosines; bad inputs;
the model left as it was found."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import (SampleBasins, UnsupportedModel, sample_basins, sharpness,
                                      weight_alignment, weight_basins)
from nnmodes_widgets.analysis.basins import PRECISION, _Directions, _perturbed_layers, sample_directions

from modelstate import assert_unchanged, model_state


def mlp(seed=0, widths=(6, 12, 3), dtype=torch.float32):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def teacher_data(n=64, d=6, classes=3, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    w = torch.randn(d, classes, generator=g, dtype=dtype)
    return x, (x @ w).argmax(1)


def trained_mlp(steps=150):
    model = mlp()
    x, y = teacher_data()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def busy_model():
    """Training mode, Dropout and BatchNorm (buffers a training-mode forward would change),
    gradients present, one parameter frozen: everything an analysis must leave alone."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(10, 3))
    x, y = teacher_data()
    F.cross_entropy(model(x), y).backward()
    model[4].bias.requires_grad_(False)
    model.train()
    return model, x, y


# -- sample basins -----------------------------------------------------------------------------------

def exact_linear_radius(w, b, x, label, u, alpha):
    """Closed form for logits W x + b with 2 classes: along u the margin m + r g.u of class
    ``label`` over the other (g = w_label - w_other) reaches 0 at r = m / |g.u| when g.u < 0 and
    never otherwise; the radius is the (floor(alpha K) + 1)-th smallest of these distances."""
    other = 1 - label
    g = w[label] - w[other]
    margin = float(g @ x + b[label] - b[other])
    gu = u.reshape(u.shape[0], -1) @ g
    t = torch.where(gu < 0, margin / -gu, torch.full_like(gu, math.inf))
    allowed = math.floor(alpha * u.shape[0] + 1e-9)
    return float(t.sort().values[allowed])


@pytest.mark.parametrize("image", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 0.0, 0.3])
def test_sample_basins_linear_closed_form(image, alpha):
    torch.manual_seed(2)
    shape = (3, 2, 2) if image else (12,)
    linear = nn.Linear(12, 2).double()
    model = nn.Sequential(nn.Flatten(), linear) if image else linear
    x = torch.randn(10, *shape, dtype=torch.float64)
    result = sample_basins(model, x, directions=64, alpha=alpha, seed=3)
    assert isinstance(result, SampleBasins) and result.radius.shape == (10,)
    assert result.radius.dtype == np.float64 and not result.from_labels
    u = sample_directions(shape, 64, 3, dtype=torch.float64)
    assert torch.allclose(u.reshape(64, -1).norm(dim=1), torch.ones(64, dtype=torch.float64))
    pred = model(x).argmax(1)
    for i in range(10):
        exact = exact_linear_radius(linear.weight.detach(), linear.bias.detach(),
                                    x[i].reshape(-1), int(pred[i]), u, alpha)
        got = result.radius[i]
        assert exact / (1 + PRECISION) * (1 - 1e-9) <= got <= exact * (1 + 1e-9), (i, got, exact)
    assert result.labels.tolist() == pred.tolist()


def test_sample_basins_unbounded_when_too_few_directions_cross():
    """A linear classifier changes its prediction along about half of the directions only: with
    alpha = 0.7 more than 1 - alpha of them never cross, so the radius is inf (closed form too)."""
    torch.manual_seed(2)
    model = nn.Linear(12, 2).double()
    x = torch.randn(4, 12, dtype=torch.float64)
    u = sample_directions((12,), 16, 0, dtype=torch.float64)
    result = sample_basins(model, x, directions=16, alpha=0.7)
    pred = model(x).argmax(1)
    for i in range(4):
        exact = exact_linear_radius(model.weight.detach(), model.bias.detach(), x[i], int(pred[i]),
                                    u, 0.7)
        assert math.isinf(exact) and math.isinf(result.radius[i])


def test_sample_basins_labels_misclassified_medians_and_seed():
    model, x, y = trained_mlp()
    x, y = x[:24], y[:24].clone()
    pred = model(x).argmax(1)
    y[:3] = (pred[:3] + 1) % 3                           # three samples now misclassified
    before = model_state(model)
    a = sample_basins(model, x, y, directions=32, seed=7)
    assert_unchanged(model, before)
    assert a.from_labels and a.labels.tolist() == y.tolist()
    assert a.misclassified.tolist() == (pred != y).tolist()
    assert (a.radius[a.misclassified] == 0).all()
    assert (a.radius[~a.misclassified] > 0).all()
    assert a.classes == tuple(sorted(set(y.tolist())))
    for c in a.classes:
        assert a.class_median[c] == pytest.approx(float(np.median(a.radius[y.numpy() == c])))
    # reproducible; another seed draws other directions; chunking and batch-mates change nothing
    b = sample_basins(model, x, y, directions=32, seed=7, max_batch=5)
    assert np.array_equal(a.radius, b.radius)
    c = sample_basins(model, x, y, directions=32, seed=8)
    assert not np.array_equal(a.radius, c.radius)
    alone = sample_basins(model, x[5:6], y[5:6], directions=32, seed=7)
    assert alone.radius[0] == a.radius[5]
    # without labels: about the predictions, none misclassified
    d = sample_basins(model, x, directions=32, seed=7)
    assert d.labels.tolist() == pred.tolist() and (d.radius > 0).all()
    assert np.array_equal(d.radius[3:], a.radius[3:])


def test_sample_basins_numpy_input_and_single_logit():
    """A float64 NumPy probe is brought to the float32 weights; one logit means two classes."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = np.random.default_rng(0).normal(size=(6, 4))
    r = sample_basins(model, x, directions=16)
    pred = (model(torch.as_tensor(x, dtype=torch.float32))[:, 0] > 0).long()
    assert r.labels.tolist() == pred.tolist() and np.all(r.radius > 0)


# -- weight basins -----------------------------------------------------------------------------------

class _Attention(nn.Module):
    """Two heads of causal attention through ``F.scaled_dot_product_attention`` (4-D, as GPTs
    call it), which has no batching rule on the CPU."""

    def __init__(self):
        super().__init__()
        self.qkv, self.out = nn.Linear(8, 24), nn.Linear(8, 4)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, 2, 4).transpose(1, 2) for z in self.qkv(x).split(8, dim=-1))
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(heads.transpose(1, 2).reshape(b, t, d)).mean(1)


def test_weight_basins_of_attention_give_no_pytorch_warning(monkeypatch):
    # Under vmap PyTorch ran the attention one by one and warned "There is a performance drop
    # because we have not yet implemented the batching rule ..." in the user's notebook (the
    # architectures notebook's GPT): the losses are taken in a loop instead, and the same
    import warnings

    from nnmodes_widgets.analysis import basins

    torch.manual_seed(0)
    model, x, y = _Attention(), torch.randn(6, 5, 8), torch.randint(0, 4, (6,))
    with warnings.catch_warnings(record=True) as caught:   # (as errors, vmap would fail)
        warnings.simplefilter("always")
        got = weight_basins(model, F.cross_entropy, (x, y), directions=4, seed=1)
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    monkeypatch.setattr(basins._Losses, "__init__", _looping(basins._Losses.__init__))
    assert weight_basins(model, F.cross_entropy, (x, y), directions=4, seed=1) == got
    assert 0 < got["*"] < math.inf


def _looping(init):
    def looping(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.vmap = False
    return looping


def test_weight_basins_invariant_to_relu_rescaling_and_model_untouched():
    model, x, y = trained_mlp()
    scaled = copy.deepcopy(model)
    c = 3.0
    with torch.no_grad():
        scaled[0].weight.mul_(c)
        scaled[0].bias.mul_(c)
        scaled[2].weight.div_(c)
    assert torch.allclose(model(x), scaled(x), atol=1e-5)
    model.train()
    F.cross_entropy(model(x), y).backward()          # gradients present, to be left alone
    model[2].bias.requires_grad_(False)
    before = model_state(model)
    a = weight_basins(model, F.cross_entropy, (x, y), directions=12, seed=4)
    assert_unchanged(model, before)
    assert model.training
    b = weight_basins(scaled, F.cross_entropy, (x, y), directions=12, seed=4)
    assert list(a) == ["0", "2", "*"]
    for key in a:
        assert 0 < a[key] < math.inf
        assert abs(a[key] - b[key]) <= PRECISION * max(a[key], b[key]), (key, a[key], b[key])
    assert weight_basins(model, F.cross_entropy, (x, y), directions=12, seed=4) == a
    # per-unit rescaling (hidden unit i by c_i, its outgoing weights by 1/c_i): the first
    # layer's radius stays too, as it would not under a normalisation per layer
    per_unit = copy.deepcopy(model)
    c = torch.linspace(0.3, 4.0, 12)
    with torch.no_grad():
        per_unit[0].weight.mul_(c[:, None])
        per_unit[0].bias.mul_(c)
        per_unit[2].weight.div_(c)
    assert torch.allclose(model(x), per_unit(x), atol=1e-5)
    r = weight_basins(per_unit, F.cross_entropy, (x, y), directions=12, seed=4)["0"]
    assert abs(r - a["0"]) <= PRECISION * a["0"], (r, a["0"])
    assert weight_basins(model, F.cross_entropy, (x, y), directions=12, seed=5) != a


def test_weight_basins_definition():
    """The reported radius of each layer satisfies the definition (at most floor(alpha K) of the
    filter-normalised directions raise the loss above (1 + tolerance) L0) and 2% above it more
    fail; the directions' unit slices have the norms of the units' weights."""
    model, x, y = trained_mlp()
    k, alpha, tol = 10, 0.2, 0.1
    radii = weight_basins(model, F.cross_entropy, (x, y), directions=k, alpha=alpha, tolerance=tol)
    with torch.no_grad():
        loss0 = float(F.cross_entropy(model(x), y))
    layers = dict(_perturbed_layers(model))
    source = _Directions(k, 0)
    for key, weights in [*layers.items(), ("*", [w for ws in layers.values() for w in ws])]:
        dirs = {w.name: source.get(w, list(range(k))) for w in weights}
        for w in weights:
            unit = w.tensor.detach().norm(dim=1)
            assert torch.allclose(dirs[w.name].norm(dim=2), unit.expand(k, -1), rtol=1e-5)

        def failures(r):
            count = 0
            for j in range(k):
                params = {n: p.detach() + (r * dirs[n][j] if n in dirs else 0)
                          for n, p in model.named_parameters()}
                with torch.no_grad():
                    loss = F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)
                count += float(loss) > (1 + tol) * loss0
            return count
        r = radii[key]
        assert failures(r) <= math.floor(alpha * k)
        assert failures(r * (1 + PRECISION) * 1.001) > math.floor(alpha * k)


# -- sharpness ---------------------------------------------------------------------------------------

def test_sharpness_matches_exact_hessian():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (12,))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(v):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = v[i:i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    top = float(eig[eig.abs().argmax()])
    F.cross_entropy(model(x), y).backward()
    before = model_state(model)
    got = sharpness(model, F.cross_entropy, (x, y), iters=300)
    assert_unchanged(model, before)
    assert got == pytest.approx(top, rel=1e-3)
    assert sharpness(model, F.cross_entropy, (x, y), iters=5, seed=1) == \
        sharpness(model, F.cross_entropy, (x, y), iters=5, seed=1)


class Quadratic(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, dtype=torch.float64))

    def forward(self, x):
        return self.w


@pytest.mark.parametrize("values, expected", [((5.0, 2.0, -1.0, 0.5), 5.0),
                                              ((-6.0, 2.0, 1.0, 0.1), -6.0)])
def test_sharpness_quadratic(values, expected):
    """loss = w^T A w / 2 has Hessian A: power iteration finds its eigenvalue of largest
    magnitude (negative when that one is)."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ q.T
    model = Quadratic(4)
    got = sharpness(model, lambda w, y: 0.5 * w @ a @ w, (torch.zeros(3, 1), None), iters=100)
    assert got == pytest.approx(expected, rel=1e-6)
    assert model.w.grad is None


def test_sharpness_at_non_finite_weights_says_so_without_a_warning():
    """NaN weights give a NaN loss: NonFiniteValues, naming it, and no warning of PyTorch's
    (a float() of the loss in the graph warned in the user's notebook)."""
    import warnings

    from nnmodes_widgets.analysis.errors import NonFiniteValues

    model = Quadratic(4)
    with torch.no_grad():
        model.w[0] = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteValues, match="the loss at the model's weights is nan"):
            sharpness(model, lambda w, y: 0.5 * w @ w, (torch.zeros(3, 1), None))


# -- weight alignment --------------------------------------------------------------------------------

def brute_alignment(rows: torch.Tensor) -> float:
    rows = [r for r in rows.detach().double() if float(r.norm()) > 0]
    values = [abs(float(rows[i] @ rows[j]) / (float(rows[i].norm()) * float(rows[j].norm())))
              for i, j in itertools.combinations(range(len(rows)), 2)]
    return sum(values) / len(values) if values else math.nan


def test_weight_alignment_against_double_loop_and_chunks():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 7, 3), nn.ReLU(), nn.ConvTranspose2d(7, 4, 2), nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 9), nn.ReLU(), nn.Linear(9, 1)).double()
    with torch.no_grad():
        model[4].weight[3] = 0                       # a zero row: excluded
    before = model_state(model)
    got = weight_alignment(model)
    assert_unchanged(model, before)
    assert list(got) == ["0", "2", "4", "6"]
    assert got["0"] == pytest.approx(brute_alignment(model[0].weight.reshape(7, -1)), rel=1e-12)
    transposed = model[2].weight.transpose(0, 1).reshape(4, -1)   # [in, out, k, k] -> per out
    assert got["2"] == pytest.approx(brute_alignment(transposed), rel=1e-12)
    assert got["4"] == pytest.approx(brute_alignment(model[4].weight), rel=1e-12)
    assert math.isnan(got["6"])                      # one neuron
    for chunk in (1, 2, 3, 100):
        chunked = weight_alignment(model, chunk=chunk)
        for key in got:
            assert chunked[key] == pytest.approx(got[key], rel=1e-12, nan_ok=True)


def test_weight_alignment_grouped_transposed_conv():
    """ConvTranspose2d(4, 6, groups=2): weight [4, 3, k, k]; output channel g * 3 + j takes
    its inputs from weight[2g:2g+2, j]."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 2, groups=2).double()
    w = layer.weight.detach()
    rows = torch.stack([w[2 * g:2 * g + 2, j].reshape(-1) for g in range(2) for j in range(3)])
    assert weight_alignment(layer)[""] == pytest.approx(brute_alignment(rows), rel=1e-12)
    # filter-normalised directions: each (group, output channel) slice has that unit's norm
    (weight,) = dict(_perturbed_layers(layer))[""]
    d = _Directions(3, 0).get(weight, [0, 1, 2])
    for k in range(3):
        drows = torch.stack([d[k, 2 * g:2 * g + 2, j].reshape(-1) for g in range(2) for j in range(3)])
        assert torch.allclose(drows.norm(dim=1), rows.norm(dim=1), rtol=1e-12)


class ItemModel(nn.Module):
    """A forward torch.func.vmap cannot batch (``.item()``): weight_basins falls back to one
    call per direction, with the same result."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out if out.sum().item() > -1e30 else -out


def test_weight_basins_without_vmap():
    model, x, y = trained_mlp()
    wrapped = ItemModel(model)
    a = weight_basins(model, F.cross_entropy, (x, y), directions=8)
    b = weight_basins(wrapped, F.cross_entropy, (x, y), directions=8)
    assert list(b) == ["inner.0", "inner.2", "*"]
    for (ka, ra), rb in zip(a.items(), b.values()):
        assert abs(ra - rb) <= PRECISION * ra, (ka, ra, rb)


def test_weight_alignment_parallel_rows():
    model = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1., 2, 3], [-2, -4, -6], [0.5, 1, 1.5], [0, 0, 0]]))
    assert weight_alignment(model)[""] == pytest.approx(1.0)


# -- bad inputs --------------------------------------------------------------------------------------

def _loss_none(out, y):
    return F.cross_entropy(out, y, reduction="none")


@pytest.mark.parametrize("call, error, words", [
    (lambda m, x, y: sample_basins(m, x, directions=0), ValueError, "directions"),
    (lambda m, x, y: sample_basins(m, x, alpha=1.0), ValueError, "alpha"),
    (lambda m, x, y: sample_basins(m, x, alpha=-0.1), ValueError, "alpha"),
    (lambda m, x, y: sample_basins(m, x, alpha="0.1"), TypeError, "alpha"),
    (lambda m, x, y: sample_basins(m, x, seed=-1), ValueError, "seed"),
    (lambda m, x, y: sample_basins(m, x, max_batch=0), ValueError, "max_batch"),
    (lambda m, x, y: sample_basins(m, x, y[:5]), ValueError, "(5,)"),
    (lambda m, x, y: sample_basins(m, x, y.float()), ValueError, "dtype"),
    (lambda m, x, y: sample_basins(m, x, y + 10), ValueError, "label"),
    (lambda m, x, y: sample_basins(m, x.long()), UnsupportedModel, "float inputs"),
    (lambda m, x, y: sample_basins(m, (x,)), TypeError, "one input tensor"),
    (lambda m, x, y: sample_basins(m, x[:, :4]), ValueError, "does not fit"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x[:, :4], y)), ValueError, "does not fit"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x, y), directions=0), ValueError, "directions"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x, y), alpha=1.5), ValueError, "alpha"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x, y), tolerance=0), ValueError, "tolerance"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x, y), tolerance=-1.0), ValueError, "tolerance"),
    (lambda m, x, y: weight_basins(m, None, (x, y)), TypeError, "loss_fn"),
    (lambda m, x, y: weight_basins(m, _loss_none, (x, y)), ValueError, "shape (64,)"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, (x, y[:10])), ValueError, "differ in length"),
    (lambda m, x, y: weight_basins(m, F.cross_entropy, x), TypeError, "pair"),
    (lambda m, x, y: sharpness(m, F.cross_entropy, (x, y), iters=0), ValueError, "iters"),
    (lambda m, x, y: sharpness(m, "mse", (x, y)), TypeError, "loss_fn"),
    (lambda m, x, y: sharpness(m, _loss_none, (x, y)), ValueError, "scalar"),
    (lambda m, x, y: sharpness(m, lambda o, t: 1.0, (x, y)), TypeError, "scalar tensor"),
    (lambda m, x, y: sharpness(m, F.cross_entropy, (x[:7], y)), ValueError, "differ in length"),
    (lambda m, x, y: weight_alignment(m, chunk=0), ValueError, "chunk"),
    (lambda m, x, y: weight_alignment("model"), TypeError, "nn.Module"),
])
def test_bad_inputs(call, error, words):
    model, x, y = busy_model()
    before = model_state(model)
    with pytest.raises(error, match=None) as info:
        call(model, x, y)
    assert words in str(info.value)
    assert_unchanged(model, before)


def test_models_with_nothing_to_analyse():
    x, y = teacher_data()
    for model in (nn.Sequential(nn.ReLU()), nn.Identity()):
        with pytest.raises(UnsupportedModel, match="no weight layer"):
            weight_basins(model, F.mse_loss, (x, x))
        with pytest.raises(UnsupportedModel, match="no weight layer"):
            weight_alignment(model)
        with pytest.raises(UnsupportedModel, match="no parameter"):
            sharpness(model, F.mse_loss, (x, x))
    frozen = mlp()
    frozen.requires_grad_(False)
    with pytest.raises(UnsupportedModel, match="requires grad"):
        sharpness(frozen, F.cross_entropy, (x, y))
    with pytest.raises(UnsupportedModel, match=r"class scores \[B, C\]"):
        sample_basins(nn.Flatten(0), x)


def test_public_names():
    assert nm.analysis.sample_basins is sample_basins
    for name in ("sample_basins", "SampleBasins", "weight_basins", "sharpness", "weight_alignment"):
        assert name in nm.analysis.__all__
