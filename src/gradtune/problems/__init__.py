"""Problems: built-in ones by name, user data (CSV/NPZ), and any model plus tensors."""

from ._problem import LOSSES, TASKS, Problem, accuracy
from ._registry import ProblemEntry, as_problem, get_problem, list_problems, register_problem

__all__ = ["LOSSES", "TASKS", "Problem", "ProblemEntry", "accuracy", "as_problem", "get_problem", "list_problems",
           "register_problem"]
