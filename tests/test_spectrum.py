"""Mode decomposition (SPEC 4.4): spectra against NumPy's SVD and the definitions, piecewise
power-law fits against known laws and a brute-force search, and mode truncation curves."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import (PowerLawFit, Spectrum, fit_power_law, mode_spectrum,
                                      mode_truncation_curve)
from nnmodes_widgets.analysis.spectrum import SpectrumTracker



# -- brute force -------------------------------------------------------------------------------------

def np_singular_values(w: torch.Tensor) -> np.ndarray:
    m = w.detach().double().reshape(w.shape[0], -1).numpy()
    return np.linalg.svd(m, compute_uv=False)


def exact_singular_values(w: torch.Tensor) -> np.ndarray:
    """The float64 SVD of w through torch (LAPACK as torch links it): NumPy's own BLAS threads,
    interleaved with torch's, can slow both down by orders of magnitude on a busy machine."""
    m = w.detach().double().reshape(w.shape[0], -1)
    return torch.linalg.svdvals(m.T if m.shape[0] < m.shape[1] else m).numpy()


def ref_effective_rank(s) -> float:
    total = math.fsum(s)
    entropy = -math.fsum((v / total) * math.log(v / total) for v in s if v > 0)
    return math.exp(entropy)


def ref_energy_rank(s, q) -> int:
    total = math.fsum(v * v for v in s)
    acc = 0.0
    for k in range(len(s) + 1):
        if acc >= q * total:
            return k
        acc += s[k] ** 2
    return len(s)


def matrix_with_spectrum(s, rows, cols, seed=0, dtype=torch.float64):
    """A rows x cols matrix U diag(s) V^T with random orthonormal U, V."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(rows, len(s), generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(cols, len(s), generator=g, dtype=torch.float64)).Q
    return ((u * torch.as_tensor(s, dtype=torch.float64)) @ v.T).to(dtype)


def model_of(*weights) -> nn.Module:
    """A module holding the given tensors as parameters w0, w1, ..."""
    m = nn.Module()
    for i, w in enumerate(weights):
        m.register_parameter(f"w{i}", nn.Parameter(w.clone()))
    return m


# -- spectra -----------------------------------------------------------------------------------------

def test_spectra_match_numpy_for_linear_conv_and_embedding_weights():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv1d(6, 4, 5), nn.Flatten(),
        nn.Linear(9, 7), nn.Linear(7, 13), nn.Linear(13, 1), nn.Embedding(50, 8),
    ).double()
    spectra = mode_spectrum(model)
    expected = ["0.weight", "2.weight", "4.weight", "5.weight", "6.weight", "7.weight"]
    assert list(spectra) == expected           # model order; biases left out
    for name, p in model.named_parameters():
        if p.ndim < 2:
            continue
        spec = spectra[name]
        assert isinstance(spec, Spectrum) and not spec.partial and spec.finite
        assert spec.shape == tuple(p.shape)
        assert spec.matrix_shape == (p.shape[0], p[0].numel())
        ref = np_singular_values(p)
        s = spec.singular_values
        assert isinstance(s, np.ndarray) and s.dtype == np.float64 and not s.flags.writeable
        assert s.shape == ref.shape == (min(spec.matrix_shape),)
        assert np.all(np.diff(s) <= 0), "descending"
        np.testing.assert_allclose(s, ref, rtol=1e-12, atol=1e-12 * ref[0])


def test_derived_quantities_follow_their_definitions():
    torch.manual_seed(1)
    for shape in [(8, 5), (5, 8), (1, 6), (6, 1), (4, 3, 2)]:
        w = torch.randn(shape, dtype=torch.float64)
        spec = mode_spectrum(model_of(w))["w0"]
        ref = np_singular_values(w)
        flat = w.flatten().tolist()
        fro = math.sqrt(math.fsum(v * v for v in flat))
        assert spec.frobenius_norm == pytest.approx(fro, rel=1e-13)
        assert spec.spectral_norm == pytest.approx(ref[0], rel=1e-12)
        assert spec.lambda_max == pytest.approx(ref[0] ** 2, rel=1e-12)
        assert spec.stable_rank == pytest.approx(fro ** 2 / ref[0] ** 2, rel=1e-12)
        assert spec.effective_rank == pytest.approx(ref_effective_rank(ref), rel=1e-12)
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]:
            assert spec.energy_rank(q) == ref_energy_rank(ref, q), (shape, q)


def test_float32_and_half_precision_weights():
    torch.manual_seed(2)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        w = torch.randn(12, 9).to(dtype)
        spec = mode_spectrum(model_of(w))["w0"]
        ref = np_singular_values(w.float())
        np.testing.assert_allclose(spec.singular_values, ref, rtol=0, atol=1e-5 * ref[0])


def test_energy_rank_of_a_known_spectrum():
    s = [4.0, 2.0, 1.0, 1.0, 0.0]        # squares 16, 4, 1, 1, 0: total 22
    spec = mode_spectrum(model_of(matrix_with_spectrum(s, 6, 5)))["w0"]
    assert spec.energy_rank(16 / 22) == 1
    assert spec.energy_rank(16.5 / 22) == 2
    assert spec.energy_rank(21 / 22) == 3
    assert spec.energy_rank(1.0) == 4      # the zero value adds nothing
    assert spec.energy_rank(0) == 0
    for bad in (-0.1, 1.5, math.nan, "0.5", True):
        with pytest.raises(ValueError, match="0 <= q <= 1"):
            spec.energy_rank(bad)


def test_tied_weights_appear_once_under_their_first_name():
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b, nn.Linear(5, 2))
    spectra = mode_spectrum(model)
    assert list(spectra) == ["0.weight", "3.weight"]
    with pytest.raises(ValueError, match=r"'2.weight' is the same tensor as '0.weight'"):
        mode_spectrum(model, layers=["2.weight"])


def test_layers_selects_parameters_and_names_bad_ones():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Linear(3, 2))
    assert list(mode_spectrum(model, layers="2.weight")) == ["2.weight"]
    # the model's order, whatever the order asked for; duplicates once
    assert list(mode_spectrum(model, layers=["3.weight", "0.weight", "3.weight"])) == \
        ["0.weight", "3.weight"]
    with pytest.raises(ValueError, match=r"unknown layer '2'.*0\.weight, 2\.weight, 3\.weight"):
        mode_spectrum(model, layers=["2"])
    with pytest.raises(ValueError, match=r"'0\.bias' has shape \(6,\); spectra need ndim >= 2"):
        mode_spectrum(model, layers=["0.bias"])
    with pytest.raises(ValueError, match="layers is empty"):
        mode_spectrum(model, layers=[])
    with pytest.raises(TypeError, match="parameter names"):
        mode_spectrum(model, layers=[0])


def test_models_without_weights_and_non_models_are_refused():
    with pytest.raises(ValueError, match="ReLU has no weight with ndim >= 2"):
        mode_spectrum(nn.ReLU())
    with pytest.raises(ValueError, match="LayerNorm has no weight"):
        mode_spectrum(nn.LayerNorm(4))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        mode_spectrum(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="max_exact must be >= 0"):
        mode_spectrum(nn.Linear(2, 2), max_exact=-1)
    with pytest.raises(ValueError, match="top must be >= 1"):
        mode_spectrum(nn.Linear(2, 2), top=0)


def test_non_finite_and_zero_weights_give_nan_fields_not_errors():
    good = torch.randn(4, 3)
    nan = good.clone()
    nan[1, 2] = math.nan
    inf = good.clone()
    inf[0, 0] = math.inf
    spectra = mode_spectrum(model_of(good, nan, inf, torch.zeros(4, 3)))
    assert spectra["w0"].finite
    for name in ("w1", "w2"):
        spec = spectra[name]
        assert not spec.finite and not spec.partial
        assert spec.singular_values.shape == (3,) and np.isnan(spec.singular_values).all()
        for value in (spec.spectral_norm, spec.lambda_max, spec.stable_rank, spec.effective_rank,
                      spec.frobenius_norm):
            assert math.isnan(value)
        with pytest.raises(ValueError, match=r"shape \(4, 3\) has NaN or inf"):
            spec.energy_rank(0.5)
    zero = spectra["w3"]
    assert zero.finite and zero.spectral_norm == 0.0 and zero.frobenius_norm == 0.0
    assert np.array_equal(zero.singular_values, np.zeros(3))
    assert math.isnan(zero.stable_rank) and math.isnan(zero.effective_rank)
    assert zero.energy_rank(0.9) == 0


def test_partial_spectrum_of_a_decaying_matrix():
    rows, cols, top = 420, 300, 32
    s = np.arange(1, cols + 1) ** -0.8
    w = matrix_with_spectrum(s, rows, cols, dtype=torch.float32)
    before = torch.random.get_rng_state()
    spec = mode_spectrum(model_of(w), max_exact=10_000, top=top)["w0"]
    assert torch.equal(torch.random.get_rng_state(), before), "global RNG untouched"
    ref = np_singular_values(w)
    assert spec.partial and spec.finite and spec.singular_values.shape == (top,)
    got = spec.singular_values
    assert np.all(np.diff(got) <= 0)
    np.testing.assert_allclose(got, ref[:top], rtol=1e-4)
    assert np.all(got <= ref[:top] * (1 + 1e-6)), "partial values are lower bounds"
    assert spec.spectral_norm == pytest.approx(ref[0], rel=1e-6)
    # the norms are exact
    assert spec.frobenius_norm == pytest.approx(float(np.linalg.norm(w.double().numpy())), rel=1e-12)
    assert spec.stable_rank == pytest.approx(spec.frobenius_norm ** 2 / ref[0] ** 2, rel=1e-5)
    assert math.isnan(spec.effective_rank), "needs every value: refused"
    # energy ranks the listed values reach are the exact ones; beyond them: an error
    assert spec.energy_rank(0.3) == ref_energy_rank(ref, 0.3)
    with pytest.raises(ValueError, match=r"partial spectrum of shape \(420, 300\): its 32 values"):
        spec.energy_rank(0.99)
    # deterministic
    again = mode_spectrum(model_of(w), max_exact=10_000, top=top)["w0"]
    assert np.array_equal(again.singular_values, got)


def test_partial_spectrum_of_a_flat_gaussian_matrix():
    torch.manual_seed(3)
    w = torch.randn(600, 520)
    spec = mode_spectrum(model_of(w), max_exact=0, top=64)["w0"]
    ref = np_singular_values(w)
    assert spec.partial
    assert spec.spectral_norm == pytest.approx(ref[0], rel=1e-3)
    assert spec.spectral_norm <= ref[0] * (1 + 1e-6)
    np.testing.assert_allclose(spec.singular_values, ref[:64], rtol=0.03)


def test_exact_when_small_or_narrow_or_asked():
    w = torch.randn(300, 40)       # min dimension 40 <= 8 * top: randomized would not be cheaper
    assert not mode_spectrum(model_of(w), max_exact=0, top=8)["w0"].partial
    w = torch.randn(300, 280)
    assert mode_spectrum(model_of(w), max_exact=300 * 280 - 1, top=8)["w0"].partial
    assert not mode_spectrum(model_of(w), max_exact=300 * 280, top=8)["w0"].partial
    assert not mode_spectrum(model_of(w), max_exact=None, top=8)["w0"].partial


# -- float32 spectra through the Gram matrix ---------------------------------------------------------

EPS32 = 2.0 ** -24

GRAM_SPECTRA = {
    "gaussian": None,
    "decaying": lambda n: np.arange(1, n + 1) ** -0.8,
    "ill-conditioned": lambda n: np.geomspace(1.0, 1e-6, n),
    "rank-deficient": lambda n: np.r_[np.linspace(3.0, 1.0, n // 4), np.zeros(n - n // 4)],
}


@pytest.mark.parametrize("shape", [(90, 60), (60, 90), (300, 256), (256, 300), (128, 128),
                                   (520, 700)])
@pytest.mark.parametrize("kind", list(GRAM_SPECTRA))
def test_float32_spectra_through_the_gram_matrix_against_float64_svd(shape, kind):
    rows, cols = shape
    n = min(shape)
    law = GRAM_SPECTRA[kind]
    w = (torch.randn(shape, generator=torch.Generator().manual_seed(n)) if law is None
         else matrix_with_spectrum(law(n), rows, cols, seed=n, dtype=torch.float32))
    spec = mode_spectrum(model_of(w))["w0"]
    ref = exact_singular_values(w)          # float64 SVD of the float32 matrix itself
    s = spec.singular_values
    assert not spec.partial and spec.error == 0.0 and s.shape == ref.shape
    assert np.all(np.diff(s) <= 0) and np.all(s >= 0)
    # s_1 refined by inverse iteration: a lower bound far more accurate than the Gram eigenvalue
    assert spec.spectral_norm == pytest.approx(ref[0], rel=1e-6)
    assert spec.spectral_norm <= ref[0] * (1 + 1e-6)
    assert spec.lambda_max == pytest.approx(ref[0] ** 2, rel=2e-6)
    # every s_i^2 within c 2^-24 s_1^2 (documented c <= 340; these small matrices stay far below),
    # hence relative errors of at most c 2^-25 (s_1 / s_i)^2: 1e-3 at s_i = 0.1 s_1; a float64
    # Gram matrix up to 128 columns
    assert np.max(np.abs(s ** 2 - ref ** 2)) <= 340 * EPS32 * ref[0] ** 2
    if n <= 128:
        assert np.max(np.abs(s ** 2 - ref ** 2)) <= 1e-14 * ref[0] ** 2
    big = ref >= 0.1 * ref[0]
    np.testing.assert_allclose(s[big], ref[big], rtol=1e-3)
    np.testing.assert_allclose(s, ref, rtol=0, atol=1e-3 * ref[0])
    fro = float(np.linalg.norm(w.double().numpy()))
    assert spec.frobenius_norm == pytest.approx(fro, rel=1e-12)


def test_small_values_of_a_gram_spectrum_lose_relative_accuracy_and_float64_keeps_it():
    """The documented price of the float32 Gram matrix: values near 1e-4 s_1 have no correct
    digit left, the others keep the documented accuracy; a float64 copy keeps LAPACK's."""
    s = np.r_[np.linspace(1.0, 0.2, 150), np.full(50, 1e-4)]
    w = matrix_with_spectrum(s, 300, 200, dtype=torch.float32)
    ref = exact_singular_values(w)
    got = mode_spectrum(model_of(w))["w0"].singular_values
    np.testing.assert_allclose(got[:150], ref[:150], rtol=1e-4)
    assert np.abs(got - ref).max() <= 1e-3 * ref[0]                 # the absolute bound holds
    assert np.max(np.abs(got[150:] - ref[150:]) / ref[150:]) > 0.1     # but not a relative one
    exact64 = mode_spectrum(model_of(w.double()))["w0"].singular_values
    np.testing.assert_allclose(exact64, ref, rtol=1e-9)


def test_wide_and_tall_gram_spectra_agree_and_vectors_are_their_norm():
    w = torch.randn(70, 150, generator=torch.Generator().manual_seed(4))
    wide, tall = mode_spectrum(model_of(w, w.T.contiguous())).values()
    np.testing.assert_allclose(wide.singular_values, tall.singular_values, rtol=1e-6)
    for v in (torch.randn(1, 9), torch.randn(9, 1), torch.randn(4, 1, 3)[:, :, :1]):
        spec = mode_spectrum(model_of(v))["w0"]
        assert spec.singular_values.tolist() == [spec.frobenius_norm]   # one value: ||W||_F


def test_gram_spectra_of_huge_and_tiny_weights_do_not_overflow():
    w = torch.randn(300, 260, generator=torch.Generator().manual_seed(11))
    ref = exact_singular_values(w)
    for scale in (1e25, 1e-25):
        spec = mode_spectrum(model_of(w * scale))["w0"]
        assert spec.finite and spec.spectral_norm == pytest.approx(ref[0] * scale, rel=1e-6)
        np.testing.assert_allclose(spec.singular_values, ref * scale, rtol=0,
                                   atol=1e-3 * ref[0] * scale)
        part = mode_spectrum(model_of(w * scale), max_exact=0, top=8)["w0"]
        assert part.partial and part.spectral_norm == pytest.approx(ref[0] * scale, rel=1e-6)
        assert 0 < part.error < 1
        np.testing.assert_allclose(part.singular_values, ref[:8] * scale, rtol=part.error)


def test_gram_spectra_of_half_precision_weights_and_the_zero_and_nan_cases():
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(6))
    for dtype in (torch.float16, torch.bfloat16):
        half = w.to(dtype)
        spec = mode_spectrum(model_of(half))["w0"]
        ref = exact_singular_values(half.float())
        assert spec.spectral_norm == pytest.approx(ref[0], rel=1e-6)
        np.testing.assert_allclose(spec.singular_values, ref, rtol=0, atol=1e-5 * ref[0])
    big = torch.zeros(300, 300)
    big[5, 7] = math.nan
    for weight, finite in ((big, False), (torch.zeros(300, 300), True)):
        spec = mode_spectrum(model_of(weight))["w0"]
        assert spec.finite is finite and spec.singular_values.shape == (300,)
        assert math.isnan(spec.error) if not finite else spec.error == 0.0


# -- partial spectra: refined leading values, the error bound ----------------------------------------

def test_partial_spectra_refine_lambda_max_and_bound_their_error():
    torch.manual_seed(7)
    cases = {"gaussian": torch.randn(700, 600),
             "decaying": matrix_with_spectrum(np.arange(1, 601) ** -0.3, 700, 600,
                                              dtype=torch.float32)}
    for name, w in cases.items():
        spec = mode_spectrum(model_of(w), max_exact=0, top=32)["w0"]
        ref = exact_singular_values(w)
        s = spec.singular_values
        assert spec.partial and s.shape == (32,) and np.all(np.diff(s) <= 0)
        # block Lanczos: lambda_max to float32 accuracy even on a flat spectrum
        assert spec.lambda_max == pytest.approx(ref[0] ** 2, rel=2e-6), name
        np.testing.assert_allclose(s[:16], ref[:16], rtol=1e-4, err_msg=name)
        assert np.all(s <= ref[:32] * (1 + 2e-6)), "lower bounds"
        # error: every listed value within error * s_i of some singular value of W
        assert 0 < spec.error < 0.2
        nearest = np.min(np.abs(ref[None, :] - s[:, None]), axis=1)
        assert np.all(nearest <= spec.error * s), name
        assert np.max(np.abs(s - ref[:32]) / ref[:32]) <= spec.error, name
    # rank 20 < top: the zeros come out at the rounding level, and the error says so
    w = matrix_with_spectrum(np.r_[np.linspace(2, 1, 20), np.zeros(580)], 700, 600,
                             dtype=torch.float32)
    spec = mode_spectrum(model_of(w), max_exact=0, top=32)["w0"]
    ref = exact_singular_values(w)
    s = spec.singular_values
    np.testing.assert_allclose(s[:20], ref[:20], rtol=1e-5)
    assert np.all(s[20:] < 1e-5) and spec.error > 1
    assert np.all(np.min(np.abs(ref[None, :] - s[:, None]), axis=1) <= spec.error * s)


# -- SpectrumTracker ---------------------------------------------------------------------------------

def drifting_linear(w: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def test_tracker_first_update_is_mode_spectrum_and_leaves_the_global_rng_alone():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Linear(300, 20), nn.Conv1d(2, 3, 4))
    tracker = SpectrumTracker(top=8, max_exact=10_000)
    before = torch.random.get_rng_state()
    got = tracker.update(model)
    assert torch.equal(torch.random.get_rng_state(), before)
    ref = mode_spectrum(model, max_exact=10_000, top=8)
    assert list(got) == list(ref) == ["0.weight", "2.weight", "3.weight"]
    assert [s.partial for s in got.values()] == [True, False, False]
    for name in ref:
        a, b = got[name], ref[name]
        assert np.array_equal(a.singular_values, b.singular_values), name
        assert (a.error, a.frobenius_norm, a.shape) == (b.error, b.frobenius_norm, b.shape)
    assert got["2.weight"].error == 0.0 and got["0.weight"].error > 0
    assert (tracker.cold_starts, tracker.warm_updates) == (1, 0)
    assert list(tracker.update(model, layers=["2.weight"])) == ["2.weight"]


def test_tracker_converges_to_the_exact_values_over_a_slowly_drifting_matrix():
    s = np.arange(1, 201) ** -0.5
    w = matrix_with_spectrum(s, 300, 200, dtype=torch.float32)
    layer = drifting_linear(w)
    tracker = SpectrumTracker(top=8, max_exact=0)
    step = torch.randn(300, 200, generator=torch.Generator().manual_seed(9))
    step *= 1e-4 * w.norm() / step.norm()
    errors, actual = [], []
    for _ in range(12):
        spec = tracker.update(layer)["weight"]
        ref = exact_singular_values(layer.weight)
        assert spec.partial and spec.finite
        rel = np.abs(spec.singular_values - ref[:8]) / ref[:8]
        assert rel.max() <= spec.error, "the bound holds"
        assert np.all(spec.singular_values <= ref[:8] * (1 + 2e-6))
        assert spec.lambda_max == pytest.approx(ref[0] ** 2, rel=2e-6)
        errors.append(spec.error)
        actual.append(rel.max())
        with torch.no_grad():
            layer.weight.add_(step)
    assert (tracker.cold_starts, tracker.warm_updates) == (1, 11)
    # one warm iteration per call keeps converging while the weights drift
    assert errors[-1] < errors[0] / 100 and actual[-1] < 1e-5 < actual[0]
    # deterministic: the same sequence of weights gives the same spectra
    again = SpectrumTracker(top=8, max_exact=0)
    layer2 = drifting_linear(w)
    for _ in range(12):
        last = again.update(layer2)["weight"]
        with torch.no_grad():
            layer2.weight.add_(step)
    assert np.array_equal(last.singular_values, spec.singular_values)


def test_tracker_starts_cold_after_a_shape_change_new_weights_nan_or_reset():
    torch.manual_seed(10)
    tracker = SpectrumTracker(top=8, max_exact=0)
    model = nn.Sequential(nn.Linear(200, 300))
    tracker.update(model)
    tracker.update(model)
    assert (tracker.cold_starts, tracker.warm_updates) == (1, 1)

    def assert_cold(expected_cold):
        got = tracker.update(model)["0.weight"]
        ref = mode_spectrum(model, max_exact=0, top=8)["0.weight"]
        assert tracker.cold_starts == expected_cold
        assert np.array_equal(got.singular_values, ref.singular_values)

    model[0] = nn.Linear(200, 280)              # same name, new shape
    assert_cold(2)
    with torch.no_grad():                       # same shape, unrelated weights: residual too large
        model[0].weight.copy_(matrix_with_spectrum(np.arange(1, 201) ** -1.0, 280, 200, seed=3,
                                                   dtype=torch.float32))
    assert_cold(3)
    with torch.no_grad():
        model[0].weight[3, 4] = math.nan
    spec = tracker.update(model)["0.weight"]
    assert not spec.finite and spec.partial and math.isnan(spec.error)
    assert np.isnan(spec.singular_values).all() and spec.singular_values.shape == (8,)
    with torch.no_grad():
        model[0].weight[3, 4] = 0.0
    assert_cold(4)                               # no warm start from NaN
    tracker.reset()
    assert_cold(5)
    assert tracker.warm_updates == 1


def test_tracker_bad_arguments():
    with pytest.raises(ValueError, match="top must be >= 1"):
        SpectrumTracker(top=0)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        SpectrumTracker(iters=0)
    for bad in (0, -1.0, math.nan, "1e-3", True):
        with pytest.raises(ValueError, match="tol must be a number > 0"):
            SpectrumTracker(tol=bad)
    with pytest.raises(ValueError, match="max_exact must be >= 0"):
        SpectrumTracker(max_exact=-1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        SpectrumTracker().update(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="has no weight with ndim >= 2"):
        SpectrumTracker().update(nn.ReLU())


# -- power-law fits ----------------------------------------------------------------------------------

def piecewise(n, slopes, starts, jump=1.0):
    """Values with log v = a_j + slope_j log r on segment j; segment j + 1 starts at rank
    starts[j]. Each new segment starts ``jump`` times its predecessor's continuation (1.0:
    continuous)."""
    r = np.arange(1, n + 1, dtype=np.float64)
    logv = np.empty(n)
    bounds = [1, *starts, n + 1]
    a = 0.5
    a_prev = slope_prev = 0.0       # the previous segment's line, once there is one
    for j, slope in enumerate(slopes):
        lo, hi = bounds[j], bounds[j + 1]
        if j:
            a = a_prev + slope_prev * math.log(lo) - slope * math.log(lo) + math.log(jump)
        logv[lo - 1:hi - 1] = a + slope * np.log(r[lo - 1:hi - 1])
        a_prev, slope_prev = a, slope
    return np.exp(logv)


def test_single_power_law_is_recovered_exactly():
    v = 3.0 * np.arange(1, 51) ** -0.7
    fit = fit_power_law(v, breaks=0)
    assert isinstance(fit, PowerLawFit)
    assert fit.breakpoints == () and fit.segments == ((1, 50),)
    assert fit.slopes[0] == pytest.approx(-0.7, abs=1e-12)
    assert fit.intercepts[0] == pytest.approx(math.log(3.0), abs=1e-12)
    assert fit.r2 == 1.0
    np.testing.assert_allclose(fit.predict(), v, rtol=1e-12)


@pytest.mark.parametrize("start", [4, 17, 60, 98])
def test_one_break_is_found_exactly_without_noise(start):
    v = piecewise(100, [-0.3, -1.6], [start], jump=0.6)
    fit = fit_power_law(v)               # breaks=1 by default
    assert fit.breakpoints == (start,)
    assert fit.segments == ((1, start - 1), (start, 100))
    np.testing.assert_allclose(fit.slopes, [-0.3, -1.6], atol=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12) and fit.sse < 1e-18
    np.testing.assert_allclose(fit.predict(), v, rtol=1e-9)


def test_two_breaks_are_found_exactly_and_a_continuous_knee_within_one_rank():
    v = piecewise(300, [-0.2, -1.0, -2.5], [40, 170], jump=1.5)
    fit = fit_power_law(v, breaks=2)
    assert fit.breakpoints == (40, 170)
    np.testing.assert_allclose(fit.slopes, [-0.2, -1.0, -2.5], atol=1e-9)
    # continuous: the knee point lies on both lines, so either side of it is an exact fit
    v = piecewise(200, [-0.5, -2.0], [80], jump=1.0)
    fit = fit_power_law(v, breaks=1)
    assert fit.breakpoints[0] in (80, 81) and fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_noisy_laws_are_fitted_closely():
    rng = np.random.default_rng(0)
    v = piecewise(400, [-0.4, -1.5], [120], jump=1.0) * np.exp(rng.normal(0, 0.01, 400))
    fit = fit_power_law(v)
    assert abs(fit.breakpoints[0] - 120) <= 8
    np.testing.assert_allclose(fit.slopes, [-0.4, -1.5], atol=0.03)
    assert 0.99 < fit.r2 < 1.0
    v = piecewise(2000, [-0.1, -0.8, -2.0], [150, 900], jump=1.0) * np.exp(rng.normal(0, 0.01, 2000))
    fit = fit_power_law(torch.tensor(v), breaks=2)       # tensors are accepted too
    assert abs(fit.breakpoints[0] - 150) <= 15 and abs(fit.breakpoints[1] - 900) <= 40
    np.testing.assert_allclose(fit.slopes, [-0.1, -0.8, -2.0], atol=0.05)


def brute_force_fit(v, breaks):
    """Every admissible set of break ranks, each segment fitted with np.polyfit."""
    n, x, y = len(v), np.log(np.arange(1, len(v) + 1)), np.log(v)
    best = (math.inf, None)
    for starts in itertools.combinations(range(2, n + 1), breaks):
        bounds = [1, *starts, n + 1]
        if any(b - a < 3 for a, b in zip(bounds[:-1], bounds[1:])):
            continue
        sse = 0.0
        for a, b in zip(bounds[:-1], bounds[1:]):
            coef = np.polyfit(x[a - 1:b - 1], y[a - 1:b - 1], 1)
            sse += float(np.sum((np.polyval(coef, x[a - 1:b - 1]) - y[a - 1:b - 1]) ** 2))
        if sse < best[0] - 1e-12:
            best = (sse, starts)
    return best


@pytest.mark.parametrize("breaks", [0, 1, 2, 3])
def test_exhaustive_search_matches_a_brute_force_loop(breaks):
    rng = np.random.default_rng(breaks)
    for trial in range(4):
        n = int(rng.integers(3 * (breaks + 1), 19))
        v = np.exp(rng.normal(0, 1, n))
        fit = fit_power_law(v, breaks=breaks)
        sse, starts = brute_force_fit(v, breaks)
        assert fit.breakpoints == tuple(starts), (n, trial)
        assert fit.sse == pytest.approx(sse, rel=1e-9, abs=1e-12)
        sst = float(np.sum((np.log(v) - np.log(v).mean()) ** 2))
        assert fit.r2 == pytest.approx(1 - sse / sst, abs=1e-9)
        assert 0.0 <= fit.r2 <= 1.0


def test_constant_values_fit_with_r2_one():
    fit = fit_power_law(np.full(10, 2.0), breaks=1)
    assert fit.r2 == 1.0 and fit.slopes == pytest.approx((0.0, 0.0), abs=1e-12)


def test_power_law_bad_input():
    with pytest.raises(ValueError, match="breaks must be >= 0, got -1"):
        fit_power_law(np.ones(10), breaks=-1)
    with pytest.raises(TypeError, match="breaks must be an int"):
        fit_power_law(np.ones(10), breaks=1.5)
    with pytest.raises(TypeError, match="breaks must be an int"):
        fit_power_law(np.ones(10), breaks=True)
    with pytest.raises(ValueError, match="3 segment.*at least 9 values, got 8"):
        fit_power_law(np.ones(8), breaks=2)
    with pytest.raises(ValueError, match=r"rank 4 is 0\.0 \(to fit the positive head, pass values\[:3\]\)"):
        fit_power_law([5.0, 4.0, 3.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="rank 1 is -1.0"):
        fit_power_law([-1.0, 4.0, 3.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="rank 2 is nan"):
        fit_power_law([5.0, math.nan, 3.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="rank 3 is inf"):
        fit_power_law([5.0, 4.0, math.inf, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"1-D, got shape \(2, 5\)"):
        fit_power_law(np.ones((2, 5)))


# -- mode truncation ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    return x[:1200], torch.tensor(y[:1200]), x[1200:], torch.tensor(y[1200:])


@pytest.fixture(scope="module")
def trained(digits):
    """A digits MLP 64-32-10 trained to > 90% test accuracy (about a second)."""
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(80):
        loss = nn.functional.cross_entropy(model(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    assert accuracy(model, xte, yte) > 0.9
    return model


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, state):
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(now[k], v) and now[k].dtype == v.dtype, k


def truncated_weight(w, kept):
    u, s, vh = np.linalg.svd(w.detach().double().reshape(w.shape[0], -1).numpy(), full_matrices=False)
    kept = sorted(kept)
    return (u[:, kept] * s[kept]) @ vh[kept]


def test_full_rank_is_the_unmodified_score_and_zero_rank_the_bias(trained, digits):
    _, _, xte, yte = digits
    full = accuracy(trained, xte, yte)
    curve = mode_truncation_curve(trained, "2", lambda m: accuracy(m, xte, yte), ks=[10, 0, 10])
    assert [k for k, _ in curve] == [10, 0, 10]
    assert curve[0][1] == full and curve[2][1] == full
    outputs = []
    mode_truncation_curve(trained, "2", lambda m: outputs.append(m(xte[:5]).detach()) or 0.0, ks=[0])
    assert torch.equal(outputs[0], trained[2].bias.detach().expand(5, 10))
    # in float64 a rebuilt U S V^T would differ in the last bits: all modes means the weight itself
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(9, 7, dtype=torch.float64)
    seen = []

    def output(m):
        seen.append(m[0].weight.detach().clone())
        return m(x).square().sum()

    for order in ("leading", "trailing", "random"):
        seen.clear()
        curve = mode_truncation_curve(model, "0", output, ks=[5], order=order)
        assert curve == [(5, output(model).item())] and torch.equal(seen[0], model[0].weight)


@pytest.mark.parametrize("order", ["leading", "trailing"])
def test_rebuilt_weights_keep_the_chosen_singular_triplets(trained, order):
    w = trained[0].weight
    seen = {}

    def grab(m):
        seen[len(seen)] = m[0].weight.detach().clone()
        return 0.0

    ks = [1, 5, 17, 31]
    mode_truncation_curve(trained, "0.weight", grab, ks=ks, order=order)
    for i, k in enumerate(ks):
        kept = range(k) if order == "leading" else range(32 - k, 32)
        np.testing.assert_allclose(seen[i].double().numpy(), truncated_weight(w, kept), atol=1e-5)


def test_random_order_is_reproducible_by_seed_and_nested(trained):
    w = trained[0].weight
    u, s, vh = np.linalg.svd(w.detach().double().numpy(), full_matrices=False)

    def kept_modes(seed):
        sets = []

        def grab(m):
            # U^T W_k V = diag(s * mask): read the kept set off the diagonal
            d = np.diag(u.T @ m[0].weight.detach().double().numpy() @ vh.T)
            sets.append(frozenset(np.flatnonzero(np.abs(d) > 1e-4 * s[0])))
            return 0.0

        mode_truncation_curve(trained, "0", grab, ks=[3, 8, 20], order="random", seed=seed)
        return sets

    a, b, c = kept_modes(7), kept_modes(7), kept_modes(8)
    assert a == b and a != c
    assert [len(x) for x in a] == [3, 8, 20]
    assert a[0] < a[1] < a[2], "one permutation: nested sets"
    assert a[2] != frozenset(range(20)), "not simply the leading modes"


def test_leading_modes_keep_more_accuracy_than_trailing(trained, digits):
    _, _, xte, yte = digits
    score = lambda m: accuracy(m, xte, yte)   # noqa: E731
    for layer, ks in (("0", [2, 4, 8, 16]), ("2", [2, 4, 6, 8])):
        lead = mode_truncation_curve(trained, layer, score, ks=ks, order="leading")
        trail = mode_truncation_curve(trained, layer, score, ks=ks, order="trailing")
        rand = mode_truncation_curve(trained, layer, score, ks=ks, order="random")
        assert sum(a for _, a in lead) > sum(a for _, a in rand) > sum(a for _, a in trail)
        assert lead[-1][1] > trail[-1][1] + 0.1


def test_everything_is_restored_after_return_and_after_an_exception(digits):
    xtr, ytr, _, _ = digits
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    model[0].bias.requires_grad_(False)
    nn.functional.cross_entropy(model(xtr[:50]), ytr[:50]).backward()
    model.eval()
    state = state_of(model)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def meddle(m):
        # trains, moves BatchNorm statistics, flips flags: all of it must be undone
        m.train()
        nn.functional.cross_entropy(m(xtr[:50]), ytr[:50]).backward()
        opt.step()
        m[3].weight.requires_grad_(False)
        return 1.0

    def check():
        assert_same_state(model, state)
        assert not any(m.training for m in model.modules())
        for n, p in model.named_parameters():
            assert p.requires_grad == flags[n], n
            assert (p.grad is None) == (grads[n] is None), n
            assert p.grad is None or torch.equal(p.grad, grads[n]), n

    curve = mode_truncation_curve(model, "0", meddle, ks=[0, 3, 16])
    assert curve == [(0, 1.0), (3, 1.0), (16, 1.0)]
    check()

    calls = []

    def fails(m):
        calls.append(1)
        meddle(m)
        if len(calls) == 2:
            raise RuntimeError("evaluation broke")
        return 0.5

    with pytest.raises(RuntimeError, match="evaluation broke"):
        mode_truncation_curve(model, "3", fails, ks=[1, 2, 3])
    check()
    with pytest.raises(TypeError, match="must return a number, got str"):
        mode_truncation_curve(model, "3", lambda m: "good", ks=[1])
    check()


def test_evaluate_may_return_tensors_and_numpy_scalars(trained):
    assert mode_truncation_curve(trained, "2", lambda m: torch.tensor(0.25), ks=[1]) == [(1, 0.25)]
    assert mode_truncation_curve(trained, "2", lambda m: np.float32(0.5), ks=[1]) == [(1, 0.5)]


def test_mode_linear_layers_are_truncated_through_their_own_modes():
    torch.manual_seed(5)
    model = nn.Sequential(nm.ModeLinear(6, 5, 7, bias=True), nn.ReLU(), nn.Linear(5, 3))
    layer = model[0]
    with torch.no_grad():
        layer.lam.copy_(torch.tensor([0.1, -3.0, 0.5, 2.0, -0.01, 1.0, 0.2]))
    original = layer.lam.detach().clone()
    rank = torch.argsort(layer.mode_importance(), descending=True).tolist()
    seen = []
    ks = [0, 2, 5, 7]
    for order in ("leading", "trailing"):
        seen.clear()
        mode_truncation_curve(model, "0", lambda m: seen.append(m[0].lam.detach().clone()) or 0.0,
                              ks=ks, order=order)
        for k, lam in zip(ks, seen):
            kept = rank[:k] if order == "leading" else rank[7 - k:]
            expected = torch.zeros(7)
            expected[kept] = original[kept]
            assert torch.equal(lam, expected), (order, k)
        # the pattern vectors are untouched: only lam changes
    assert torch.equal(layer.lam, original)
    # k = 0: the bias alone
    out = []
    mode_truncation_curve(model, "0", lambda m: out.append(m[0](torch.randn(4, 6)).detach()) or 0.0,
                          ks=[0])
    assert torch.equal(out[0], layer.bias.detach().expand(4, 5))


def test_convolution_layers_are_truncated_as_out_by_rest_matrices():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    w = model[0].weight.detach().clone()
    seen = []
    mode_truncation_curve(model, "0", lambda m: seen.append(m[0].weight.detach().clone()) or 0.0,
                          ks=[2])
    assert seen[0].shape == w.shape
    np.testing.assert_allclose(seen[0].reshape(4, -1).double().numpy(), truncated_weight(w, [0, 1]),
                               atol=1e-6)


def test_default_ks_spread_over_the_rank():
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 64), nn.Linear(64, 48))
    assert [k for k, _ in mode_truncation_curve(model, "0", lambda m: 0.0)] == list(range(7))
    ks = [k for k, _ in mode_truncation_curve(model, "2", lambda m: 0.0)]
    assert ks[0] == 0 and ks[-1] == 48 and ks == sorted(set(ks)) and 15 <= len(ks) <= 22


def test_truncation_bad_input_changes_nothing():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    state = state_of(model)
    ok = lambda m: 0.0   # noqa: E731
    cases = [
        (dict(layer="5"), ValueError, r"unknown layer '5'; layers with modes: '0', '2'"),
        (dict(layer="1"), TypeError, r"layer '1' is a ReLU; mode truncation needs nn.Linear"),
        (dict(layer="0.bias"), ValueError, "unknown layer '0.bias'"),
        (dict(layer=0), TypeError, "module name"),
        (dict(order="largest"), ValueError,
         "unknown order 'largest'; choose one of 'leading', 'trailing', 'random'"),
        (dict(ks=[4]), ValueError, r"k = 4 is out of range: the layer has 3 modes \(0 <= k <= 3\)"),
        (dict(ks=[-1]), ValueError, "k = -1 is out of range"),
        (dict(ks=[1.0]), TypeError, "ks must hold ints, got 1.0"),
        (dict(ks=[True]), TypeError, "ks must hold ints"),
        (dict(ks=[]), ValueError, "ks is empty"),
        (dict(ks=3), TypeError, "ks must be an iterable of ints"),
        (dict(seed="x"), TypeError, "seed must be an int"),
        (dict(seed=-1), ValueError, "seed must be >= 0, got -1"),
        (dict(evaluate=None), TypeError, "evaluate must be callable"),
    ]
    for change, error, message in cases:
        kw = dict(layer="0", evaluate=ok) | change
        with pytest.raises(error, match=message):
            mode_truncation_curve(model, kw.pop("layer"), kw.pop("evaluate"), **kw)
        assert_same_state(model, state)
    with torch.no_grad():
        model[2].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="layer '2' has NaN or inf weights"):
        mode_truncation_curve(model, "2", ok)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        mode_truncation_curve("model", "0", ok)


@pytest.mark.parametrize("shape", [(30, 200), (200, 30), (64, 64)])
def test_exact_spectra_of_wide_tall_and_square_weights_match_numpy(shape):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64)
    s = mode_spectrum(model_of(w), max_exact=None)["w0"].singular_values
    np.testing.assert_allclose(s, np.linalg.svd(w.numpy(), compute_uv=False), rtol=1e-10)
