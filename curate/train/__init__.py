"""The torch pretraining loop over token shards: model, data, loop, evaluation, config.

Import heavy modules lazily: ``from curate.train.loop import train``.
"""
from curate.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
