"""Model builders with activation and initialisation choices."""

from .activations import ACTIVATIONS, make_activation
from .cnn import Conv1dNet
from .init import INITS, apply_init
from .mlp import linear_model, mlp

__all__ = ["ACTIVATIONS", "INITS", "Conv1dNet", "apply_init", "linear_model", "make_activation", "mlp"]
