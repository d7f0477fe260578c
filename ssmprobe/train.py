"""Standard training of a sequence classifier (the ST of §3); adversarial methods build on it.

AdamW with a cosine schedule over all steps (Appendix C Table 4: lr 1e-3, weight decay 2e-4,
batch 256). After every epoch the clean loss and accuracy on the test set are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import SequenceDataset, make_loader


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 2e-4
    seed: int = 0


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over `batches`, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    return loss_sum / count, correct / count


def train_standard(
    model: nn.Module,
    train_set: SequenceDataset,
    test_set: SequenceDataset,
    config: TrainConfig,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Trains `model` in place with clean cross-entropy; returns one metrics row per epoch."""
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed)
    test_loader = make_loader(test_set, config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * len(loader))
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for x, y in bar:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        test_loss, test_acc = evaluate(model, test_loader)
        history.append({"epoch": epoch, "test_clean_loss": test_loss, "test_clean_acc": test_acc})
    return history
