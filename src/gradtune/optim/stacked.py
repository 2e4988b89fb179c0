"""An optimiser over parameters stacked along a leading member axis: one kernel call for P members.

Each hyperparameter is a tensor of shape ``[P]``, viewed as ``[P, 1, ..., 1]``
against each parameter, so every member follows its own learning rate,
momentum, betas and weight decay with no Python loop over members. The
arithmetic is the same kernel the single loop runs, so a population member and
its single-loop twin take the same steps.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ._registry import get_optimizer_def

__all__ = ["StackedOptimizer"]


class StackedOptimizer:
    """Steps ``params`` (name -> ``[P, ...]`` leaf tensors) with per-member hyperparameters.

    Example:
        >>> params = {"w": torch.zeros(4, 3, requires_grad=True)}
        >>> opt = StackedOptimizer("momentum", params, {"momentum": torch.full((4,), 0.9),
        ...                                             "weight_decay": torch.zeros(4)})
        >>> params["w"].sum().backward(); opt.step(lr=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    """

    def __init__(self, name: str, params: Mapping[str, Tensor], hyper: Mapping[str, Tensor]):
        self.name = name
        self.definition = get_optimizer_def(name)
        if not self.definition.vectorisable:
            raise ValueError(f"optimizer '{name}' cannot run stacked")
        self.params = dict(params)
        self.hyper = {k: torch.as_tensor(v) for k, v in hyper.items() if k != "lr"}
        self.step_count = 0
        self._views: dict[str, dict[str, Tensor | float]] = {}
        self.state = {k: self.definition.init_state(p, self._hyper_view(k, p)) for k, p in self.params.items()}

    @staticmethod
    def _view(param: Tensor, value: Tensor) -> Tensor:
        return value.to(device=param.device, dtype=param.dtype).view((-1,) + (1,) * (param.dim() - 1))

    def _hyper_view(self, name: str, param: Tensor) -> dict[str, Tensor | float]:
        """The fixed hyperparameters shaped against ``param``, built once per layout.

        A hyperparameter that is zero for every member becomes the float 0.0, so
        the kernel skips its arithmetic (weight decay, RMSprop momentum) without
        a tensor check each step.
        """
        if name not in self._views:
            self._views[name] = {k: 0.0 if not bool(v.ne(0).any()) else self._view(param, v)
                                 for k, v in self.hyper.items()}
        return self._views[name]

    @torch.no_grad()
    def step(self, lr: Tensor) -> None:
        """One step for every member; ``lr`` has shape ``[P]``."""
        self.step_count += 1
        for name, param in self.params.items():
            if param.grad is None:
                continue
            values = {**self._hyper_view(name, param), "lr": self._view(param, lr)}
            self.definition.update(param, param.grad, self.state[name], values, self.step_count)

    def keep(self, rows: Tensor, params: Mapping[str, Tensor]) -> None:
        """Keep only members ``rows`` (a compaction); ``params`` are the already-compacted parameters."""
        self.params = dict(params)
        self.hyper = {k: v[rows] for k, v in self.hyper.items()}
        self._views = {}
        self.state = {name: {k: v[rows] for k, v in state.items()} for name, state in self.state.items()}

    def member_state(self, row: int) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v[row].clone() for k, v in state.items()} for name, state in self.state.items()}

    def snapshot(self) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v.clone() for k, v in state.items()} for name, state in self.state.items()}


class MixedStackedOptimizer:
    """Members of one stack that use different optimisers: one :class:`StackedOptimizer` per name.

    Each name owns a set of rows. A name that owns every row updates the stacked
    tensors in place; otherwise its rows are gathered, stepped and written back,
    which costs two copies of those rows but lets, say, momentum and Adam members
    share one forward and backward pass.
    """

    def __init__(self, names: list[str], params: Mapping[str, Tensor], hyper: list[Mapping[str, float]]):
        self.params = dict(params)
        self.names = list(names)
        self.parts: dict[str, tuple[Tensor, StackedOptimizer]] = {}
        self._steps = 0
        for name in dict.fromkeys(names):
            rows = torch.tensor([i for i, n in enumerate(names) if n == name], dtype=torch.long)
            keys = [k for k in hyper[rows[0]] if k != "lr"]
            values = {k: torch.tensor([hyper[i][k] for i in rows.tolist()], dtype=torch.float64) for k in keys}
            self.parts[name] = (rows, StackedOptimizer(name, self._rows(rows), values))

    @property
    def step_count(self) -> int:
        return self._steps

    def _whole(self, rows: Tensor) -> bool:
        return len(rows) == len(self.names)

    def _rows(self, rows: Tensor) -> dict[str, Tensor]:
        if self._whole(rows):
            return self.params
        out = {}
        for k, p in self.params.items():
            part = p.detach()[rows.to(p.device)]
            if p.grad is not None:
                part.grad = p.grad[rows.to(p.device)]
            out[k] = part
        return out

    @torch.no_grad()
    def step(self, lr: Tensor) -> None:
        self._steps += 1
        for rows, optimizer in self.parts.values():
            optimizer.params = self._rows(rows)
            optimizer.step(lr[rows])
            if not self._whole(rows):
                for k, p in self.params.items():
                    p[rows.to(p.device)] = optimizer.params[k]

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def keep(self, rows: Tensor, params: Mapping[str, Tensor]) -> None:
        """Keep stack rows ``rows`` (in their new order); ``params`` are the compacted tensors."""
        self.params = dict(params)
        kept = rows.tolist()
        self.names = [self.names[r] for r in kept]
        parts = {}
        for name, (old_rows, optimizer) in self.parts.items():
            old = old_rows.tolist()
            mine = [(new, old.index(r)) for new, r in enumerate(kept) if r in old]
            if not mine:
                continue
            new_rows = torch.tensor([m[0] for m in mine], dtype=torch.long)
            optimizer.keep(torch.tensor([m[1] for m in mine], dtype=torch.long), self._rows(new_rows))
            parts[name] = (new_rows, optimizer)
        self.parts = parts

    def _locate(self, row: int) -> tuple[str, int]:
        for name, (rows, _) in self.parts.items():
            if row in rows.tolist():
                return name, rows.tolist().index(row)
        raise IndexError(row)

    def member_state(self, row: int) -> dict[str, dict[str, Tensor]]:
        name, local = self._locate(row)
        return self.parts[name][1].member_state(local)

    def snapshot(self) -> dict[str, tuple[list[int], dict[str, dict[str, Tensor]]]]:
        """Every part's rows and a copy of its state, for :meth:`member_state_from`."""
        return {name: (rows.tolist(), optimizer.snapshot()) for name, (rows, optimizer) in self.parts.items()}

    @staticmethod
    def member_state_from(snapshot, row: int) -> dict[str, dict[str, Tensor]]:
        """The state of stack row ``row`` as it was when ``snapshot`` was taken."""
        for rows, states in snapshot.values():
            if row in rows:
                local = rows.index(row)
                return {p: {k: v[local].clone() for k, v in s.items()} for p, s in states.items()}
        raise IndexError(row)
