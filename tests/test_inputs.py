"""Model inputs (nnmodes_widgets.analysis.inputs): slicing and picking samples of every batched
argument."""

import torch

from nnmodes_widgets.analysis.inputs import ModelInputs


def test_rows_and_take_pick_samples_of_every_batched_tensor_and_leave_the_rest():
    ids = torch.arange(12).view(6, 2)
    mask = torch.ones(6, 2, dtype=torch.bool)
    table = torch.randn(3, 4)            # not batched: its first size is not the batch's
    inputs = ModelInputs((ids, table), {"attention_mask": mask, "flag": True})
    picked = inputs.take(torch.tensor([4, 0, 4]))
    assert torch.equal(picked.args[0], ids[[4, 0, 4]]) and picked.args[1] is table
    assert torch.equal(picked.kwargs["attention_mask"], mask[[4, 0, 4]]) and picked.kwargs["flag"] is True
    assert picked.batch == 3 and inputs.batch == 6
    assert torch.equal(inputs.rows(1, 3).args[0], ids[1:3]) and inputs.rows(1, 3).args[1] is table
