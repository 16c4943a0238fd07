"""A tiny GPT-2 built from a config (no download), token data, and TrainingArguments for a quiet
CPU run; run as a script under torchrun, a Trainer fit on 2 processes (gloo) watched by
NNModesCallback:

    torchrun --nproc-per-node 2 tests/hf_job.py BATCHES EVERY
"""

import os
import sys

import torch


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=12, n_positions=8, n_embd=16, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0))


class Tokens(torch.utils.data.Dataset):
    """``n`` random sequences of 8 token ids, labelled with themselves; item ``fail_at`` raises."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.ids = torch.randint(0, 12, (n, 8), generator=torch.Generator().manual_seed(0))
        self.fail_at = fail_at

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise RuntimeError(f"bad item {i}")
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def arguments(output_dir, **options):
    from transformers import TrainingArguments

    defaults = dict(per_device_train_batch_size=1, num_train_epochs=1, use_cpu=True,
                    report_to="none", save_strategy="no", logging_strategy="no",
                    disable_tqdm=True, dataloader_num_workers=0)
    return TrainingArguments(output_dir=str(output_dir), **{**defaults, **options})


if __name__ == "__main__":
    from transformers import Trainer

    from nnmodes_widgets.integrations.transformers import NNModesCallback

    batches, every = int(sys.argv[1]), int(sys.argv[2])
    callback = NNModesCallback(every=every, analyses=("rwc", "spectrum"))
    trainer = Trainer(model=tiny_gpt2(), args=arguments("out", run_name="ddp", ddp_backend="gloo"),
                      train_dataset=Tokens(batches), callbacks=[callback])
    trainer.train()       # each process gets half the batches
    monitor = callback.monitor
    print(f"rank {trainer.args.process_index}: step {monitor.current_step}, run {monitor.run_path}",
          flush=True)
    # The process ends here, before the interpreter's own teardown: there, a plain Trainer fit
    # under torchrun (no callback; its process group destroyed, as Accelerate's scripts end)
    # aborted rank 1 in 5 of 40 runs ("terminate called without an active exception", no
    # Python frame: pytorch/pytorch#190489). The run is finished by the callback, not at exit.
    trainer.accelerator.end_training()
    os._exit(0)
