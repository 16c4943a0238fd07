"""Every analysis on the architectures people train (SPEC 4.2-4.3, any architecture): ResNets
(pre- and post-activation), a DenseNet block, a ViT, a character-level GPT and a Hugging Face
GPT-2 built from a config, checked against autograd, and run under the monitor with all five
analyses recorded and nothing switched off."""

import copy

import pytest
import torch
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import (characteristic_maps, gated_radiograph, neuron_modes,
                                      pathway_layers, static_radiograph)

import zoo  # tests/zoo.py


def prepared(name):
    """The model in float64 and eval mode, BatchNorm statistics away from the identity."""
    torch.manual_seed(1)
    model = zoo.IMAGE_MODELS[name]().double().eval()
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 - 0.5)
    return model


def unit_jacobian(model, x, layer, *, leaf_of=None):
    """Autograd reference: d (layer output summed over all but the batch and unit axes) / d input,
    [B, n, *input shape]; ``leaf_of`` replaces that module's output by the differentiated input
    (the embedding of a token model)."""
    modules = dict(model.named_modules())
    target = modules[layer]
    axis = 1 if isinstance(target, nn.modules.conv._ConvNd) else -1
    seen = {}

    def keep(m, i, o):
        # as the layer returned it (attention: (output, weights)); a copy, since the forward
        # may change it in place afterwards (out += shortcut)
        seen["z"] = (o[0] if isinstance(o, tuple) else o).clone()

    def run(e):
        handles = [target.register_forward_hook(keep)]
        if leaf_of is not None:
            handles.append(modules[leaf_of].register_forward_hook(lambda m, i, o: e))
        try:
            model(x if leaf_of is not None else e)
        finally:
            for h in handles:
                h.remove()
        z = seen["z"].movedim(axis, 1)
        return z.reshape(*z.shape[:2], -1).sum(-1).sum(0)

    if leaf_of is None:
        start = x
    else:
        with torch.no_grad():
            captured = {}
            h = modules[leaf_of].register_forward_hook(lambda m, i, o: captured.setdefault("e", o))
            model(x)
            h.remove()
        start = captured["e"]
    jac = torch.autograd.functional.jacobian(run, start)     # [n, B, *input]
    return jac.transpose(0, 1), start


def open_gates(model):
    """A copy with every activation the identity (``act`` attributes, ReLU modules)."""
    linear = copy.deepcopy(model)
    for name, m in list(linear.named_modules()):
        if hasattr(m, "act"):
            m.act = zoo.identity
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(m, child_name, nn.Identity())
    return linear


@pytest.mark.parametrize("name", list(zoo.IMAGE_MODELS))
def test_gated_radiographs_and_characteristic_maps_are_autograd_jacobians(name):
    model, x = prepared(name), zoo.images().double()
    layers = pathway_layers(model)
    assert layers and "fc" in layers[-1] or "head" in layers[-1]
    for layer in (layers[0], layers[len(layers) // 2], layers[-1]):
        got = gated_radiograph(model, x, layer)
        expected, _ = unit_jacobian(model, x, layer)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11, msg=f"{name} {layer}")
        torch.testing.assert_close(characteristic_maps(model, x, layer), got * x[:, None])
    some = gated_radiograph(model, x, layers[-1], units=[3, 1])
    torch.testing.assert_close(some, expected[:, [3, 1]])


@pytest.mark.parametrize("name", ["preact-resnet", "densenet", "postact-resnet"])
def test_static_radiographs_open_every_gate_skip_paths_included(name):
    model, x = prepared(name), zoo.images(batch=1).double()
    linear = open_gates(model)
    for layer in pathway_layers(model):
        got = static_radiograph(model, layer, x=x)
        expected, _ = unit_jacobian(linear, x, layer)
        torch.testing.assert_close(got, expected[0], rtol=1e-9, atol=1e-11, msg=f"{name} {layer}")
        # the max-pool's choice is the only factor frozen at the probe
        assert got.frozen == (("maxpool:max_pool2d (selection)",) if name == "postact-resnet"
                              and layer != "conv1" else ())


def test_vit_static_radiograph_freezes_layer_norms_and_attention():
    model, x = prepared("vit"), zoo.images().double()
    got = static_radiograph(model, "head", x=x)
    assert got.shape == (10, 3, 8, 8)
    frozen = " ".join(got.frozen)
    assert "encoder.layers.0.norm1:layer_norm (scale)" in frozen
    assert "encoder.layers.0.self_attn:multi_head_attention_forward (attention pattern)" in frozen
    assert "norm:layer_norm (scale)" in frozen


def gpt():
    torch.manual_seed(3)
    return zoo.GPT().double().eval()


def test_token_models_differentiate_the_embedding_output():
    model, idx = gpt(), zoo.tokens()
    for layer in ("blocks.0.fc", "blocks.1.attn.proj", "head"):
        got = gated_radiograph(model, idx, layer)
        expected, e = unit_jacobian(model, idx, layer, leaf_of="tok")
        assert got.shape == (4, expected.shape[1], 8, 16)       # [B, n, T, d]
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    maps = characteristic_maps(model, idx, "blocks.0.fc")       # one value per token position
    torch.testing.assert_close(maps, (got_fc := gated_radiograph(model, idx, "blocks.0.fc"))
                               .mul(e.unsqueeze(1)).sum(-1))
    assert maps.shape == (4, 64, 8) and got_fc.dtype == torch.float64


def test_language_model_maps_follow_each_positions_predicted_token():
    model, idx = gpt(), zoo.tokens()
    maps = characteristic_maps(model, idx, "head")
    assert maps.shape == (4, 8, 8)
    with torch.no_grad():
        predicted = model(idx).argmax(-1)
    e = model.tok(idx).detach().requires_grad_(True)
    handle = model.tok.register_forward_hook(lambda m, i, o: e)
    try:
        logits = model(idx)
    finally:
        handle.remove()
    for b in range(2):
        for t in range(8):
            (g,) = torch.autograd.grad(logits[b, t, predicted[b, t]], e, retain_graph=True)
            torch.testing.assert_close(maps[b, t], (e * g)[b].sum(-1).detach())
            # causal attention: no later position reaches position t
            assert (maps[b, t, t + 1:] == 0).all()
    given = characteristic_maps(model, idx, "head", y=torch.zeros_like(idx))
    assert not torch.equal(given, maps)


def test_neuron_modes_see_functional_and_module_activations_with_stable_keys():
    model, x = prepared("preact-resnet"), zoo.images().double()
    modes = neuron_modes(model, x)
    # functional calls: the calling module and the call's position (SPEC 3)
    assert list(modes) == ["blocks.0:relu#0", "blocks.0:relu#1", "blocks.1:relu#0",
                           "blocks.1:relu#1", "relu#0"]
    assert modes["blocks.1:relu#0"].activation == "blocks.1:relu#0"
    assert modes["blocks.0:relu#0"].n_samples == 4 * 8 * 8 and modes["relu#0"].n_samples == 4 * 4 * 4
    assert list(neuron_modes(model, x)) == list(modes)              # stable between calls
    with torch.no_grad():
        z = model.blocks[1].bn1(model.blocks[0](model.stem(x)))
    torch.testing.assert_close(modes["blocks.1:relu#0"].active_fraction,
                               (z > 0).double().mean(dim=(0, 2, 3)))

    post = neuron_modes(prepared("postact-resnet"), x)
    # one ReLU module used twice per block: after bn1 (conv1's output: the layer's key) and after
    # the residual sum (the module and the call's position)
    assert list(post) == ["conv1", "layers.0.conv1", "layers.0.relu#1", "layers.1.conv1",
                          "layers.1.relu#1"]
    assert post["layers.0.relu#1"].activation == "layers.0.relu"

    tokens = neuron_modes(gpt(), zoo.tokens())
    assert list(tokens) == ["blocks.0:gelu#0", "blocks.1:gelu#0"]
    assert tokens["blocks.0:gelu#0"].n_samples == 4 * 8            # every token position is a sample
    assert tokens["blocks.0:gelu#0"].active_fraction.shape == (64,)
    assert tokens.not_analysable == {}


def test_vit_activation_inside_the_encoder_layer_is_seen():
    modes = neuron_modes(prepared("vit"), zoo.images().double())
    # nn.TransformerEncoderLayer calls F.gelu in its forward
    assert list(modes) == ["encoder.layers.0:gelu#0", "encoder.layers.1:gelu#0"]
    assert modes["encoder.layers.0:gelu#0"].n_samples == 4 * 5      # 4 patches + class token


class KeywordCall(nn.Module):
    """Calls a Hugging Face model with keyword inputs and returns its logits (for the reference)."""

    def __init__(self, model, mask):
        super().__init__()
        self.m, self.mask = model, mask

    def forward(self, idx):
        return self.m(input_ids=idx, attention_mask=self.mask).logits


def test_hugging_face_gpt2_from_a_config():
    model = zoo.tiny_gpt2()
    if model is None:
        pytest.skip("transformers is not installed (the test extra installs it)")
    model = model.double().eval()
    idx = zoo.tokens()
    inputs = {"input_ids": idx, "attention_mask": torch.ones_like(idx)}
    layers = pathway_layers(model)
    assert "transformer.h.0.mlp.c_fc" in layers and layers[-1] == "lm_head"
    got = gated_radiograph(model, inputs, "transformer.h.1.mlp.c_fc")
    expected, _ = unit_jacobian(KeywordCall(model, inputs["attention_mask"]), idx,
                                "m.transformer.h.1.mlp.c_fc", leaf_of="m.transformer.wte")
    assert got.shape == (4, 64, 8, 16)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    modes = neuron_modes(model, inputs)
    # NewGELUActivation: a parameter-free elementwise module of transformers', one activation
    assert list(modes) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    assert modes["transformer.h.0.mlp.c_fc"].activation == "transformer.h.0.mlp.act"
    maps = characteristic_maps(model, inputs, "lm_head")
    assert maps.shape == (4, 8, 8)
    static = static_radiograph(model, "lm_head", x=inputs)
    assert any("scaled_dot_product_attention" in f or "softmax" in f for f in static.frozen)


# -- under the monitor ---------------------------------------------------------------------------------

FIVE = ("rwc", "spectrum", "radiograph", "neuron_modes", "characteristic_maps")


def training(name):
    """(model, one training step) the way people write them, defaults everywhere."""
    torch.manual_seed(0)
    if name in zoo.IMAGE_MODELS:
        model = zoo.IMAGE_MODELS[name]()
        loss = lambda m, s: nn.functional.cross_entropy(   # noqa: E731
            m(zoo.images(16, seed=s)), torch.arange(16) % 10)
    elif name == "gpt":
        model = zoo.GPT()
        loss = lambda m, s: nn.functional.cross_entropy(   # noqa: E731
            m(zoo.tokens(16, seed=s)).flatten(0, 1), zoo.tokens(16, seed=s + 99).flatten())
    else:
        model = zoo.tiny_gpt2()
        if model is None:
            pytest.skip("transformers is not installed (the test extra installs it)")
        loss = lambda m, s: m(input_ids=(t := zoo.tokens(16, seed=s)), labels=t).loss   # noqa: E731
    return model, loss


@pytest.mark.parametrize("name", [*zoo.IMAGE_MODELS, "gpt", "gpt2-hf"])
def test_every_analysis_runs_under_the_monitor_with_nothing_switched_off(name):
    model, loss = training(name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    monitor = nm.Monitor(model, optimizer, every=2, budget=1.0)   # budget 1: every offer runs
    for step in range(16):
        optimizer.zero_grad()
        loss(model, step).backward()
        optimizer.step()
        monitor.flush()
    monitor.detach()
    assert monitor.errors == [], monitor.errors[:1]
    notes = {n.analysis: n.message for n in monitor.notices}
    assert not any("switched off" in m for m in notes.values()), notes
    # what a static radiograph freezes is said once, and shown with the radiographs
    frozen = {"preact-resnet": None, "densenet": None, "postact-resnet": "maxpool:max_pool2d",
              "vit": "encoder.layers.0.norm1:layer_norm (scale)",
              "gpt": "blocks.0.attn:scaled_dot_product_attention (attention pattern)",
              "gpt2-hf": "transformer.h.0.ln_1:layer_norm (scale)"}[name]
    # the live runs say how much of the probe they use
    assert notes["neuron_modes"].startswith("live from the first 16 probe samples"), notes
    assert notes["characteristic_maps"].startswith("live:"), notes
    assert notes["basins"].startswith("live: basins of the first 16 probe samples"), notes
    assert sorted(notes) == sorted(["neuron_modes", "characteristic_maps", "basins"]
                                   + ([] if frozen is None else ["radiograph"])), notes
    if frozen:
        assert notes["radiograph"].startswith("static radiographs freeze at the probe") and \
            frozen in notes["radiograph"], notes
        panel = nm.Dashboard(monitor).radiograph          # shows it under its title
        assert frozen in panel.frame_meta["note"], panel.frame_meta
    history = monitor.history
    for analysis in FIVE:
        assert history.layers(analysis), analysis
    called = [layer for layer in pathway_layers(model) if layer in history.layers("radiograph")]
    assert called == history.layers("radiograph")          # front to back, module names
    _, maps = history.latest("characteristic_maps", history.layers("characteristic_maps")[0])
    if name in zoo.IMAGE_MODELS:
        assert maps.shape == (10, 10, 3 * 8 * 8)    # predicted classes x output units x inputs
    else:
        assert maps.shape == (1, 8, 8)              # positions x input positions


@pytest.mark.parametrize("name", ["postact-resnet", "vit"])
def test_every_static_radiograph_from_one_pass_equals_one_layer_at_a_time(name):
    from nnmodes_widgets.analysis import static_radiographs

    model, x = prepared(name), zoo.images(batch=2).double()
    every = static_radiographs(model, x, units=5)
    assert list(every) == [layer for layer in pathway_layers(model) if layer in every]
    assert len(every) == len(pathway_layers(model))
    for layer, r in every.items():
        one = static_radiograph(model, layer, x=x, units=5)
        torch.testing.assert_close(r, one, rtol=1e-10, atol=1e-12)
        assert r.frozen == one.frozen, layer


class InPlaceResidual(nn.Module):
    """``out += shortcut`` overwrites the last convolution's output after it ran."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, 1, 1), nn.Conv2d(4, 3, 3, 1, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        out = self.conv2(torch.relu(self.conv1(x)))
        out += x
        return self.fc(torch.relu(out).mean(dim=(2, 3)))


def test_a_layer_output_changed_in_place_afterwards_is_analysed_as_the_layer_returned_it():
    torch.manual_seed(5)
    model, x = InPlaceResidual().double().eval(), zoo.images(batch=3).double()
    for layer in pathway_layers(model):
        expected, _ = unit_jacobian(model, x, layer)
        torch.testing.assert_close(gated_radiograph(model, x, layer), expected, msg=layer)
        torch.testing.assert_close(characteristic_maps(model, x, layer), expected * x[:, None],
                                   msg=layer)
    from nnmodes_widgets.analysis import static_radiographs

    every = static_radiographs(model, x[:1])
    torch.testing.assert_close(every["conv2"], static_radiograph(model, "conv2", x=x[:1]))
