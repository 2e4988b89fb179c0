"""Short measurements of a problem that advise training: the learning-rate range test and the gradient noise scale."""

from .batch_size import BatchSizeResult, measure_noise_scale
from .lr_range import LRFindResult, lr_find, lr_find_many
from .lr_suggest import SUGGESTIONS
from .noise_scale import NoiseEstimate, gradient_noise_scale

__all__ = ["BatchSizeResult", "LRFindResult", "NoiseEstimate", "SUGGESTIONS", "gradient_noise_scale", "lr_find",
           "lr_find_many", "measure_noise_scale"]
