"""The radiograph widget's kernel side: frames as binary buffers, validation, export."""

import numpy as np
import pytest
import torch

from nnmodes_widgets.widgets import Radiograph
from nnmodes_widgets.widgets.binary import encode_array


def test_float32_frames_travel_as_raw_bytes():
    rng = np.random.default_rng(0)
    maps = {"0": rng.normal(size=(4, 64)), "2": torch.randn(3, 64)}
    widget = Radiograph()
    widget.show(7, maps, input_shape=(8, 8))
    meta = widget.frame_meta
    assert meta["step"] == 7 and meta["input_shape"] == [8, 8]
    assert [b["layer"] for b in meta["bands"]] == ["0", "2"]
    assert [b["shape"] for b in meta["bands"]] == [[4, 64], [3, 64]]
    assert isinstance(widget.frame_data, bytes)
    assert len(widget.frame_data) == 4 * (4 * 64 + 3 * 64)      # float32, no JSON overhead
    first = np.frombuffer(widget.frame_data[: 4 * 4 * 64], dtype=np.float32).reshape(4, 64)
    np.testing.assert_array_equal(first, maps["0"].astype(np.float32))


def test_quantised_frames_are_a_quarter_of_the_bytes_and_round_trip():
    a = np.linspace(-2, 3, 600, dtype=np.float32).reshape(20, 30)
    a[0, 0] = np.nan
    meta, payload = encode_array(a, quantize=True)
    assert meta["dtype"] == "uint8" and len(payload) == a.size
    q = np.frombuffer(payload, dtype=np.uint8).reshape(a.shape)
    back = np.where(q == 255, np.nan, meta["offset"] + meta["scale"] * q)
    assert np.isnan(back[0, 0])
    np.testing.assert_allclose(back[1:], a[1:], atol=meta["scale"] / 2 + 1e-6)
    meta, payload = encode_array(np.full((2, 2), np.nan), quantize=True)
    assert set(payload) == {255}


@pytest.mark.parametrize("bad, message", [
    ({"0": np.zeros(5)}, "must be 2-D"),
    ({}, "at least one"),
])
def test_bad_frames_are_refused_and_change_nothing(bad, message):
    widget = Radiograph()
    widget.show(1, {"0": np.ones((2, 4))})
    before = (dict(widget.frame_meta), widget.frame_data)
    with pytest.raises(ValueError, match=message):
        widget.show(2, bad)
    with pytest.raises(ValueError, match="does not fit layer '0'"):
        widget.show(2, {"0": np.ones((2, 4))}, input_shape=(3, 3))
    assert (widget.frame_meta, widget.frame_data) == before


def test_export_of_the_frame_on_display(tmp_path):
    widget = Radiograph(view="absolute")
    with pytest.raises(ValueError, match="nothing to export"):
        widget.export(tmp_path / "r.png")
    widget.show(3, {"0": np.arange(12.0).reshape(3, 4) - 6})
    assert widget.export(tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="step 3 only"):
        widget.export(tmp_path / "r.svg", step=1)
    with pytest.raises(ValueError, match="history_size"):
        Radiograph(history_size=0)


def test_tiles_place_each_neuron_in_its_own_cell():
    from nnmodes_widgets.widgets.radiograph import tile_image

    maps = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)      # 5 neurons of 2 x 3 inputs
    image = tile_image(maps, (2, 3), per_row=2)
    assert image.shape == (3 * 3 - 1, 2 * 4 - 1)
    for k in range(5):
        r, c = divmod(k, 2)
        np.testing.assert_array_equal(image[3 * r: 3 * r + 2, 4 * c: 4 * c + 3], maps[k].reshape(2, 3))
    assert np.isnan(image[2]).all() and np.isnan(image[:, 3]).all()   # separators
    assert np.isnan(image[6:, 4:]).all()                              # padding after the last


def test_only_the_first_max_neurons_travel_and_the_band_says_how_many():
    widget = Radiograph(max_neurons=3)
    widget.show(1, {"0": np.arange(40.0).reshape(10, 4)})
    band = widget.frame_meta["bands"][0]
    assert band["neurons"] == 10 and band["shape"] == [3, 4]
    assert len(widget.frame_data) == 4 * 3 * 4
    titles = [ax.get_title(loc="left") for ax in widget.figure().axes]
    assert any(t.startswith("0 (first 3 of 10 neurons") for t in titles), titles   # as on screen
    assert widget.figure().axes[0].get_images()[0].get_array().shape == (3, 4)
    with pytest.raises(ValueError, match="max_neurons"):
        Radiograph(max_neurons=0)


def test_frames_shown_faster_than_max_rate_are_coalesced_to_the_newest():
    import time

    widget = Radiograph(max_rate=5)
    widget.show(1, {"0": np.zeros((2, 3))})
    assert widget.frame_meta["step"] == 1            # the first frame goes at once
    sent = []
    widget.observe(lambda change: sent.append(change["new"]["step"]), "frame_meta")
    for step in range(2, 40):                        # far faster than 5 per second
        widget.show(step, {"0": np.full((2, 3), float(step))})
    deadline = time.monotonic() + 5
    while widget.frame_meta["step"] != 39 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert widget.frame_meta["step"] == 39           # the newest arrives
    assert len(sent) <= 3, sent                      # the ones in between were replaced
    np.testing.assert_array_equal(np.frombuffer(widget.frame_data, np.float32), 39.0)
    widget.close()


def test_neurons_with_no_value_at_the_end_of_a_band_are_left_out_and_counted():
    w = Radiograph(max_neurons=64)
    try:
        band = np.full((64, 9), np.nan, dtype=np.float32)
        band[:4] = 1.0                       # a live analysis reduced to its first 4 units
        empty = np.full((3, 9), np.nan, dtype=np.float32)
        w.show(5, {"0": band, "class 1": empty}, empty={"class 1": "no probe sample of class 1"})
        metas = {m["layer"]: m for m in w.frame_meta["bands"]}
        assert metas["0"]["shape"] == [4, 9] and metas["0"]["neurons"] == 64   # "showing 4 of 64"
        assert metas["class 1"]["shape"] == [3, 9] and metas["class 1"]["empty"]
        assert metas["0"]["empty"] == ""
    finally:
        w.close()
