"""Relative weight change (SPEC 4.1): snapshots, the three RWC kinds against explicit loops, and
the streaming tracker the monitor uses."""

import math

import pytest
import torch
from torch import nn

from nnmodes_widgets.analysis import relative_weight_change, weight_snapshot
from nnmodes_widgets.analysis import rwc as rwc_module
from nnmodes_widgets.analysis.rwc import RwcTracker

KINDS = ("l1", "elementwise", "l2")

from brute import ref_rwc  # tests/brute.py


# -- brute force -------------------------------------------------------------------------------------

def same(x: float, y: float, rel: float) -> bool:
    """Equal within a relative tolerance; NaN matches NaN only."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=rel, abs_tol=0.0)


def assert_matches_ref(result, before, after, kind, rel=1e-6):
    assert set(result) == set(before) & set(after)
    for name, value in result.items():
        assert type(value) is float, (name, type(value))
        expected = ref_rwc(before[name], after[name], kind)
        assert same(value, expected, rel), (name, kind, value, expected)


def random_pair(shapes, seed, dtype=torch.float32, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    before = {n: torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for n, s in shapes.items()}
    after = {n: (t.double() + scale * torch.randn(t.shape, generator=g, dtype=torch.float64)).to(dtype)
             for n, t in before.items()}
    return before, after


# Several layers in one call so that the flat-buffer layout (offsets, padding to 1024-element
# chunks, chunk ownership) is exercised, not just one tensor alone.
SHAPES = {
    "bias": (7,),                      # 1-D, as with include_bias
    "scalar": (),                      # 0-D parameter
    "fc.weight": (13, 17),
    "conv.weight": (8, 3, 3, 3),       # 4-D conv kernel
    "exact_chunk": (32, 32),           # exactly 1024 elements
    "odd.weight": (37, 29),            # 1073: not a multiple of 1024
    "big.weight": (65, 50),            # 3250 > 3 * 1024
    "empty.weight": (0, 5),            # 0 elements
}


# -- weight_snapshot ----------------------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.ln = nn.LayerNorm(5)
        self.out = nn.Linear(5, 3, bias=False)
        self.gain = nn.Parameter(torch.tensor(1.5))   # 0-D


def test_snapshot_default_keeps_only_ndim2_weights_in_model_order():
    torch.manual_seed(0)
    snap = weight_snapshot(Net())
    assert list(snap) == ["conv.weight", "fc.weight", "out.weight"]


def test_snapshot_include_bias_adds_biases_norm_and_scalar_params_but_no_buffers():
    torch.manual_seed(0)
    model = Net()
    snap = weight_snapshot(model, include_bias=True)
    # named_parameters() order: the root's own parameters first, then the submodules'
    assert list(snap) == ["gain", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight",
                          "fc.bias", "ln.weight", "ln.bias", "out.weight"]
    assert "bn.running_mean" not in snap   # buffers are not weights
    for name, p in model.named_parameters():
        assert torch.equal(snap[name], p.detach())


def test_snapshot_is_a_detached_copy_with_same_device_and_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2).double(), nn.Linear(2, 2).half())
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    snap = weight_snapshot(model, include_bias=True)
    for name, p in model.named_parameters():
        assert snap[name].dtype == p.dtype and snap[name].device == p.device
        assert snap[name].requires_grad is False and snap[name].grad_fn is None
        assert snap[name].data_ptr() != p.data_ptr()
    # mutating the model afterwards (as an optimizer does, in place) leaves the snapshot alone
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for name, t in snap.items():
        assert torch.equal(t, original[name]), name
    # ... and mutating the snapshot leaves the model alone
    snap["0.weight"].zero_()
    assert torch.equal(model[0].weight.detach(), original["0.weight"] + 1.0)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.hidden = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 10, bias=False)
        self.dec.weight = self.emb.weight     # decoder weight is the embedding weight


def test_snapshot_tied_weight_appears_once_under_first_name():
    torch.manual_seed(0)
    model = Tied()
    snap = weight_snapshot(model)
    assert list(snap) == ["emb.weight", "hidden.weight"]
    assert torch.equal(snap["emb.weight"], model.dec.weight.detach())


@pytest.mark.parametrize("bad", [{"w": torch.ones(2, 2)}, torch.ones(2, 2), None, "model"])
def test_snapshot_rejects_non_module(bad):
    with pytest.raises(TypeError):
        weight_snapshot(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapshot_and_rwc_stay_on_cuda():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 40), nn.Linear(40, 5)).cuda()
    before = weight_snapshot(model)
    assert all(t.is_cuda for t in before.values())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    after = weight_snapshot(model)
    for kind in KINDS:
        res = relative_weight_change(before, after, kind=kind)
        cpu = lambda d: {n: t.cpu() for n, t in d.items()}
        assert_matches_ref(res, cpu(before), cpu(after), kind)


# -- relative_weight_change against the loop ----------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_rwc_matches_loop_on_many_shapes(kind, seed):
    before, after = random_pair(SHAPES, seed)
    result = relative_weight_change(before, after, kind=kind)
    assert list(result) == list(SHAPES)
    assert_matches_ref(result, before, after, kind)
    assert math.isnan(result["empty.weight"])   # no elements: no reference norm
    # the default kind is the published l1 formula
    if kind == "l1":
        default = relative_weight_change(before, after)
        assert all(same(default[n], result[n], 0.0) for n in result)


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_of_trained_model_snapshots(kind):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = weight_snapshot(model, include_bias=True)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
        opt.step()
    after = weight_snapshot(model, include_bias=True)
    result = relative_weight_change(before, after, kind=kind)
    assert list(result) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert_matches_ref(result, before, after, kind)
    assert all(v > 0 for v in result.values())


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_zero_norm_before_is_nan(kind):
    before = {"z": torch.zeros(3, 4), "zz": torch.zeros(5)}
    after = {"z": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), "zz": torch.zeros(5)}
    result = relative_weight_change(before, after, kind=kind)
    assert math.isnan(result["z"])     # x / 0: NaN, not inf
    assert math.isnan(result["zz"])    # 0 / 0


def test_rwc_elementwise_skips_zero_elements():
    g = torch.Generator().manual_seed(5)
    b = torch.randn(40, 60, generator=g)
    b[torch.rand(b.shape, generator=g) < 0.3] = 0.0
    a = b + 0.1 * torch.randn(b.shape, generator=g)   # zero elements of b change too
    assert (b == 0).sum() > 500 and (a[b == 0] != 0).all()
    result = relative_weight_change({"w": b}, {"w": a}, kind="elementwise")
    assert math.isfinite(result["w"])
    assert same(result["w"], ref_rwc(b, a, "elementwise"), 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_identical_is_exactly_zero(kind):
    before, _ = random_pair({k: v for k, v in SHAPES.items() if k != "empty.weight"}, 2)
    clones = {n: t.clone() for n, t in before.items()}
    assert relative_weight_change(before, clones, kind=kind) == {n: 0.0 for n in before}
    assert relative_weight_change(before, before, kind=kind) == {n: 0.0 for n in before}


def test_rwc_leaves_out_parameters_present_in_one_snapshot_only():
    before, after = random_pair({"a": (3, 3), "b": (4, 2), "c": (2, 2)}, 0)
    del before["a"], after["c"]
    result = relative_weight_change(before, after)
    assert list(result) == ["b"]
    assert same(result["b"], ref_rwc(before["b"], after["b"], "l1"), 1e-6)
    assert relative_weight_change({}, after) == {}


def test_rwc_shape_mismatch_names_parameter_and_shapes():
    before = {"ok.weight": torch.ones(2, 2), "enc.weight": torch.ones(3, 4)}
    after = {"ok.weight": torch.ones(2, 2), "enc.weight": torch.ones(4, 3)}
    with pytest.raises(ValueError) as info:
        relative_weight_change(before, after)
    msg = str(info.value)
    assert "enc.weight" in msg and "(3, 4)" in msg and "(4, 3)" in msg


@pytest.mark.parametrize("kind", ["L1", "l3", "", "cosine"])
def test_rwc_unknown_kind(kind):
    with pytest.raises(ValueError) as info:
        relative_weight_change({"w": torch.ones(2, 2)}, {"w": torch.ones(2, 2)}, kind=kind)
    assert repr(kind) in str(info.value)
    with pytest.raises(ValueError):
        RwcTracker({"w": torch.ones(2, 2)}, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_float64(kind):
    before, after = random_pair(SHAPES, 7, dtype=torch.float64, scale=1e-3)
    assert_matches_ref(relative_weight_change(before, after, kind=kind), before, after, kind, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_rwc_half_precision(dtype, kind):
    # the loop runs in float64 on the very same half-precision values
    before, after = random_pair(SHAPES, 11, dtype=dtype, scale=0.1)
    assert_matches_ref(relative_weight_change(before, after, kind=kind), before, after, kind, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_before_and_after_of_different_dtypes(kind):
    # e.g. a snapshot taken before `model.double()`, or float32 master weights vs a half copy:
    # the parameter is present in both, so it must not be silently left out.
    before, after = random_pair({"w": (20, 30), "v": (50,)}, 4)
    after = {"w": after["w"].double(), "v": after["v"].half()}
    result = relative_weight_change(before, after, kind=kind)
    assert set(result) == {"w", "v"}
    assert_matches_ref(result, before, after, kind, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_rwc_float64_accumulation_on_4m_elements(kind):
    # 4M ones changed by the same tiny float32 step d: every kind is exactly d (as float64).
    # A naive sequential float32 sum of 4M copies of d is off by ~2%.
    n = 4 * 1024 * 1024
    before = torch.ones(n)
    after = torch.full((n,), 1 + 1e-3)
    d = float(after[0]) - 1.0
    result = relative_weight_change({"w": before}, {"w": after}, kind=kind)
    assert same(result["w"], d, 1e-6), (result["w"], d)


@pytest.mark.parametrize("scale", [1e-30, 1e-22, 1e25])
@pytest.mark.parametrize("kind", KINDS)
def test_rwc_is_scale_invariant_in_float32(kind, scale):
    # RWC is a ratio: scaling before and after by the same factor must not change it, also for
    # float32 weights whose squares under- or overflow float32 (SPEC: accumulate in float64).
    before, after = random_pair({"w": (40, 50)}, 9)
    scaled_b, scaled_a = ({"w": (t["w"].double() * scale).float()} for t in (before, after))
    result = relative_weight_change(scaled_b, scaled_a, kind=kind)
    assert same(result["w"], ref_rwc(scaled_b["w"], scaled_a["w"], kind), 1e-5), result


# -- RwcTracker ----------------------------------------------------------------------------------------

def perturbed(tensors, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    return {n: (t.double() + scale * torch.randn(t.shape, generator=g, dtype=torch.float64)).to(t.dtype)
            for n, t in tensors.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_consecutive_updates_on_live_tensors(kind):
    # The tracker is given the same (live) tensors every time, mutated in place in between, as the
    # monitor does with parameters: it must keep its own copy of the previous state.
    states = [random_pair(SHAPES, 0)[0]]
    for i in range(1, 5):
        states.append(perturbed(states[-1], 100 + i))
    live = {n: t.clone() for n, t in states[0].items()}
    tracker = RwcTracker(live, kind=kind)
    assert tracker.started == []
    for i in range(1, 5):
        for n, t in live.items():
            t.copy_(states[i][n])
        result = tracker.update(live)
        assert tracker.started == []
        assert list(result) == list(SHAPES)
        assert_matches_ref(result, states[i - 1], states[i], kind)
        expected = relative_weight_change(states[i - 1], states[i], kind=kind)
        assert all(same(result[n], expected[n], 1e-9) for n in expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("block", [1024, 2048, 4096])
def test_tracker_blocks_split_and_pack_layers(kind, block, monkeypatch):
    # Blocks of 1-4 chunks: big layers are split across blocks, small ones share a block, ragged
    # tails and the empty layer sit next to other layers' pieces. Every layout gives the loop's
    # values, update after update.
    monkeypatch.setitem(rwc_module._BLOCK, "cpu", block)
    states = [random_pair(SHAPES, 5)[0]]
    for i in range(1, 4):
        states.append(perturbed(states[-1], 200 + i))
    live = {n: t.clone() for n, t in states[0].items()}
    tracker = RwcTracker(live, kind=kind)
    (group,) = tracker._groups
    assert max(stop - start for start, stop, _ in group.blocks) <= block
    assert len(group.blocks) > 1
    # one chunk per block leaves no room to pack layers; larger blocks pack them
    assert any(len(pieces) > 1 for *_, pieces in group.blocks) == (block > 1024)
    for i in range(1, 4):
        for n, t in live.items():
            t.copy_(states[i][n])
        assert_matches_ref(tracker.update(live), states[i - 1], states[i], kind)
    assert all(torch.equal(view, live[n]) for n, view in zip(group.names, group.snap_views))


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_mixed_dtypes(kind):
    s0 = {"a32": torch.randn(30, 40, generator=torch.Generator().manual_seed(1)),
          "b64": torch.randn(1500, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
          "c16": torch.randn(9, 9, generator=torch.Generator().manual_seed(3)).half(),
          "d32": torch.randn(5, 3, generator=torch.Generator().manual_seed(4))}
    s1 = perturbed(s0, 10)
    s2 = perturbed(s1, 11)
    tracker = RwcTracker(s0, kind=kind)
    r1, r2 = tracker.update(s1), tracker.update(s2)
    assert list(r1) == list(s0) and list(r2) == list(s0)
    assert_matches_ref(r1, s0, s1, kind, rel=1e-5)
    assert_matches_ref(r2, s1, s2, kind, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_added_tensor_starts_at_next_update(kind):
    s0 = random_pair({"a": (10, 10), "b": (300,)}, 0)[0]
    s1 = perturbed(s0, 1)
    s1["new"] = torch.randn(7, 11, generator=torch.Generator().manual_seed(9))
    s2 = perturbed(s1, 2)
    tracker = RwcTracker(s0, kind=kind)
    r1 = tracker.update(s1)
    assert tracker.started == ["new"]
    assert "new" not in r1
    assert_matches_ref(r1, s0, {n: s1[n] for n in ("a", "b")}, kind)  # others undisturbed
    r2 = tracker.update(s2)
    assert tracker.started == []
    assert list(r2) == ["a", "b", "new"]
    assert_matches_ref(r2, s1, s2, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_removed_tensor_disappears(kind):
    s0 = random_pair({"a": (10, 10), "b": (300,), "c": (4, 4)}, 0)[0]
    s1 = perturbed({n: s0[n] for n in ("a", "c")}, 1)
    tracker = RwcTracker(s0, kind=kind)
    r1 = tracker.update(s1)
    assert list(r1) == ["a", "c"] and tracker.started == []
    assert_matches_ref(r1, s0, s1, kind)
    # coming back later, it has no snapshot any more: it starts afresh
    s2 = perturbed(s1, 2)
    s2["b"] = torch.ones(300)
    r2 = tracker.update(s2)
    assert tracker.started == ["b"] and "b" not in r2
    assert_matches_ref(r2, s1, {n: s2[n] for n in ("a", "c")}, kind)


@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_tracker_replaced_tensor_restarts(change):
    s0 = random_pair({"a": (10, 10), "b": (6, 5)}, 0)[0]
    s1 = perturbed(s0, 1)
    if change == "shape":
        s1["b"] = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    else:
        s1["b"] = s1["b"].double()
    s2 = perturbed(s1, 2)
    tracker = RwcTracker(s0)
    r1 = tracker.update(s1)
    assert tracker.started == ["b"] and list(r1) == ["a"]
    assert_matches_ref(r1, s0, {"a": s1["a"]}, "l1")
    r2 = tracker.update(s2)
    assert tracker.started == [] and list(r2) == ["a", "b"]
    assert_matches_ref(r2, s1, s2, "l1")
