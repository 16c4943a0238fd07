"""Callbacks for the trainers people train with: ``integrations.lightning.NNModesCallback`` for
Lightning, ``integrations.transformers.NNModesCallback`` for the Hugging Face Trainer. Each
module imports its framework when it is imported itself; this package imports neither."""
