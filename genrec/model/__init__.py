"""Backbone, item tower, decoding heads, losses and samplers of the generative recommender."""
from genrec.model.config import PRESETS, ModelConfig, backbone_params, preset_config, preset_value
from genrec.model.losses import FullSoftmaxLoss, Loss, NewTitles, SampledSoftmaxLoss
from genrec.model.retrieval import top_k
from genrec.model.samplers import (InBatchSampler, MixedSampler, NegativeSampler, PopularitySampler,
                                   UniformSampler, build_sampler)
from genrec.model.transformer import GenerativeRecommender

__all__ = [
    "PRESETS", "ModelConfig", "backbone_params", "preset_config", "preset_value", "FullSoftmaxLoss", "Loss",
    "NewTitles", "SampledSoftmaxLoss", "top_k", "InBatchSampler", "MixedSampler", "NegativeSampler", "PopularitySampler",
    "UniformSampler", "build_sampler", "GenerativeRecommender",
]
