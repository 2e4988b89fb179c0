"""A text classifier tuned on F1: dict batches, variable-length sentences padded by a collate, whole-set F1.

Run it with the CLI (the model's ``width`` and ``dropout`` are tunable too, as
keyword arguments of its factory):

    gradtune tune examples/text_classifier.py:make_problem --budget 10 -o n=2000

The data are synthetic so the file needs no download: sentences of 4 to 20
random tokens; a sentence is positive when it holds more "positive" tokens
(ids 2-11) than "negative" ones (ids 12-21). Id 0 is padding.
"""

from __future__ import annotations

import torch
from torch import nn

import gradtune

VOCAB, PAD = 200, 0
POSITIVE, NEGATIVE = range(2, 12), range(12, 22)


def make_sentences(n: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``n`` sentences of token ids (lengths 4-20) and their labels, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 21, (n,), generator=generator)
    sentences = [torch.randint(1, VOCAB, (int(length),), generator=generator) for length in lengths]
    positive = torch.tensor(POSITIVE)
    negative = torch.tensor(NEGATIVE)
    labels = torch.tensor([int(torch.isin(s, positive).sum() > torch.isin(s, negative).sum()) for s in sentences])
    return sentences, labels


class Sentences(torch.utils.data.Dataset):
    """Items as a tokenizer gives them: ``{"input_ids": [L], "labels": int}``, each its own length."""

    def __init__(self, sentences: list[torch.Tensor], labels: torch.Tensor):
        self.sentences, self.labels = sentences, labels

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.sentences[index], "labels": self.labels[index]}


def pad_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sentence; the mask marks the real tokens."""
    ids = nn.utils.rnn.pad_sequence([item["input_ids"] for item in items], batch_first=True, padding_value=PAD)
    return {"input_ids": ids, "attention_mask": (ids != PAD).long(),
            "labels": torch.stack([item["labels"] for item in items])}


class MeanPoolClassifier(nn.Module):
    """Embedding, mean over the unmasked tokens, dropout, linear: called as ``model(input_ids=, attention_mask=)``
    because gradtune calls a model on a dict batch with its inputs by name (everything but ``labels``)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))


def make_model(width: int = 32, dropout: float = 0.1) -> nn.Module:
    """The factory: ``width`` and ``dropout`` are the user's hyperparameters (``model_args``)."""
    return MeanPoolClassifier(width, dropout)


def f1(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 of the positive class; 0 where there is no positive prediction and no positive label."""
    true_positive = ((predicted == 1) & (labels == 1)).sum().item()
    denominator = (predicted == 1).sum().item() + (labels == 1).sum().item()
    return 2 * true_positive / denominator if denominator else 0.0


def evaluate_f1(model: nn.Module, batches) -> dict[str, float]:
    """Whole-set F1: a mean of per-batch F1s would not be the F1 of the set, so predictions are gathered first.
    gradtune calls it in eval mode, without gradients, on the validation batches."""
    predicted, labels = [], []
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        predicted.append(logits.argmax(-1))
        labels.append(batch["labels"])
    return {"f1": f1(torch.cat(predicted), torch.cat(labels))}


def make_problem(n: int = 2000, valid_fraction: float = 0.2, seed: int = 0) -> gradtune.Problem:
    """``n`` sentences, ``valid_fraction`` of them held out; tuned to maximise the validation F1."""
    sentences, labels = make_sentences(n, seed)
    cut = n - int(n * valid_fraction)
    return gradtune.Problem(make_model, train=Sentences(sentences[:cut], labels[:cut]),
                            valid=Sentences(sentences[cut:], labels[cut:]), collate=pad_collate,
                            evaluate=evaluate_f1, objective="f1", direction="maximize", name="text-classifier")
