"""Everything about a module that an analysis must leave as it found it, and the check."""

import torch

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
              "_load_state_dict_pre_hooks")


def model_state(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        "training": [m.training for m in model.modules()],
        "hooks": [[dict(getattr(m, d)) for d in HOOK_DICTS if hasattr(m, d)] for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else (p.grad, p.grad.clone()) for p in model.parameters()],
        "params": [p for p in model.parameters()],
    }


def assert_unchanged(model, before):
    after = model_state(model)
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k   # bitwise
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(a is b for a, b in zip(before["params"], after["params"]))
    for g0, p in zip(before["grad"], model.parameters()):
        if g0 is None:
            assert p.grad is None
        else:
            assert p.grad is g0[0] and torch.equal(p.grad, g0[1])
