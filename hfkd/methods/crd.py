"""Contrastive Representation Distillation (CRD): an NCE objective between student and teacher embeddings.

Tian, Krishnan and Isola, "Contrastive Representation Distillation", ICLR 2020, as in the SimKD / RepDistiller code
(spec 2.6, 5.2 and 8 item 12). Both pooled vectors are embedded (``Linear`` to ``crd_feat_dim``, exact L2 norm); each
embedding is scored against the *other* side's memory bank at the K+1 dataset indices of ``contrast_index``
(positive first); the scores ``exp(<memory row, anchor> / T) / Z`` feed the NCE loss with noise ``P_n = 1/n_data``;
afterwards the memory rows of the batch's own ``index`` move towards the new embeddings (momentum ``m``, then
renormalised).

Kept from the reference: the memory starts as un-normalised uniform noise in ``[-s, s]``, ``s = 1/sqrt(dim/3)``; Z is
fixed from the very first batch (``mean(scores) * n_data``); the memory update comes after the scores. Differences:
``n_data`` is the training set's size (never hard-coded), K is lowered on small datasets (``hfkd.data.contrast``),
Z is set without a host sync (``torch.where`` on a -1 sentinel, no print), and the loss is a 0-dim tensor (the
reference's ``ContrastLoss`` returns shape [1]).

The training batches must carry ``index`` and ``contrast_index``: ``prepare_train_dataset`` wraps the training set in
``hfkd.data.contrast.ContrastiveDataset``, and ``build`` sizes the memory bank by that training set's size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..data.contrast import contrastive_dataset
from ..errors import RecipeError
from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.collectives import all_gather_rows, global_mean
from .components.feature_lists import pooled_fp32
from .components.full_precision import full_precision
from .components.linear_embed import LinearEmbed
from .components.probing import pooled_width
from .registry import register_method

NCE_EPS = 1e-7
# Z_v1 / Z_v2 before the first forward sets them
Z_UNSET = -1.0


def training_set_size(train_dataset: Any) -> int:
    """The number of training examples, the rows of each memory bank: ``n_data`` of a ``ContrastiveDataset``, else
    ``len(train_dataset)``; ``RecipeError`` for a training set without a length."""
    n_data = getattr(train_dataset, "n_data", None)
    if n_data is not None:
        return int(n_data)
    try:
        return len(train_dataset)
    except TypeError:
        raise RecipeError(
            f"crd keeps one memory row per training example, but the training set {type(train_dataset).__name__} has "
            f"no length; use a map-style dataset (datasets.Dataset or hfkd.data.DecodedImageDataset)"
        ) from None


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` per row, exactly (no epsilon), as the reference's ``Normalize``."""
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


def contrast_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """The reference ``ContrastLoss`` on ``[B, K+1]`` scores (positive first), with ``P_n = 1/n_data``, ``m = K``.

    ``-(1/B) [sum_b log(x_b0 / (x_b0 + K P_n + eps)) + sum_{b, j>=1} log(K P_n / (x_bj + K P_n + eps))]``.
    """
    scores = scores.float()
    batch, k = scores.shape[0], scores.shape[1] - 1
    noise = k / n_data
    log_positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    log_negative = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(log_positive.sum() + log_negative.sum()) / batch


class ContrastMemory(nn.Module):
    """The two memory banks ``[n_data, dim]`` (student side ``memory_v1``, teacher side ``memory_v2``) and Z.

    Buffers, not parameters: checkpointed with the method, never optimised.
    """

    def __init__(self, dim: int, n_data: int, temperature: float, momentum: float) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_v1", torch.rand(n_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("memory_v2", torch.rand(n_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("z_v1", torch.tensor(Z_UNSET))
        self.register_buffer("z_v2", torch.tensor(Z_UNSET))

    @property
    def n_data(self) -> int:
        return self.memory_v1.shape[0]

    def _scores(self, memory: torch.Tensor, anchor: torch.Tensor, contrast_index: torch.Tensor) -> torch.Tensor:
        """``exp(<memory[contrast_index[b, j]], anchor[b]> / T)``, ``[B, K+1]``, memory rows detached.

        Computed as ``(anchor @ memory^T)`` gathered at the indices: the same dot products from one ``[B, n_data]``
        matmul and a gather of scalars, instead of gathering the memory rows themselves, which would allocate a
        ``[B, K+1, dim]`` tensor per side and keep it for the backward pass. The scalars are gathered along the rows of
        ``anchor @ memory^T``, which are contiguous, not along the columns of ``memory @ anchor^T``, which would make
        the gather and its backward scatter strided. The memory is copied first: the matmul keeps its input for the
        backward pass, and the memory update after the scores writes the memory in place.
        """
        with full_precision(anchor):
            products = anchor.float() @ memory.detach().float().clone().t()  # [B, n_data]
            dots = products.gather(1, contrast_index)  # [B, K+1]
        return torch.exp(dots / self.temperature)

    @torch.no_grad()
    def _normalizer(self, z: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Z, set on the first call to ``mean(scores) * n_data`` and fixed after (no host sync).

        Under data parallelism the mean is over the global batch, as a single process with the whole batch has it.
        """
        value = torch.where(z < 0, global_mean(scores) * self.n_data, z)
        z.copy_(value)
        return value

    @torch.no_grad()
    def _update(self, memory: torch.Tensor, index: torch.Tensor, embedding: torch.Tensor) -> None:
        """``memory[index] <- normalize(m * memory[index] + (1 - m) * embedding)``.

        Under data parallelism the rows of every process are gathered first, so each process applies the whole
        global batch's update and the memories stay identical (a single process with the N-times batch does the
        same update).
        """
        index, embedding = all_gather_rows(index, embedding.detach().float())
        mixed = memory[index].float() * self.momentum + embedding * (1.0 - self.momentum)
        memory.index_copy_(0, index, l2_normalize(mixed).to(memory.dtype))

    def forward(
        self, v1: torch.Tensor, v2: torch.Tensor, index: torch.Tensor, contrast_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(out_v1, out_v2) ``[B, K+1]``: student anchor against teacher memory, teacher anchor against student's."""
        out_v2 = self._scores(self.memory_v1, v2, contrast_index)
        out_v1 = self._scores(self.memory_v2, v1, contrast_index)
        out_v1 = out_v1 / self._normalizer(self.z_v1, out_v1)
        out_v2 = out_v2 / self._normalizer(self.z_v2, out_v2)
        self._update(self.memory_v1, index, v1)
        self._update(self.memory_v2, index, v2)
        return out_v1, out_v2


@register_method
class CRD(DistillationMethod):
    """Student and teacher embeddings, their memory banks, and the two-sided NCE loss (spec 2.6)."""

    needs_dataset_indices = True  # the memory bank has a row per training example
    name = "crd"
    paper = Paper(
        "Contrastive Representation Distillation",
        "Yonglong Tian and Dilip Krishnan and Phillip Isola",
        "International Conference on Learning Representations (ICLR)",
        2020,
        "https://arxiv.org/abs/1910.10699",
    )
    default_beta = 0.8
    needs_student_features = True
    needs_teacher_features = True

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        n_data: int,
        feat_dim: int = 128,
        temperature: float = 0.07,
        momentum: float = 0.5,
    ) -> None:
        super().__init__()
        self.embed_s = LinearEmbed(student_dim, feat_dim)
        self.embed_t = LinearEmbed(teacher_dim, feat_dim)
        self.contrast = ContrastMemory(feat_dim, n_data, temperature, momentum)

    @classmethod
    def prepare_train_dataset(cls, dataset: Any, config: Any) -> Any:
        """Add ``index`` and ``contrast_index`` (K+1 per example) to every training batch (spec 5.2)."""
        return contrastive_dataset(dataset, config.crd_nce_k, config.crd_mode, seed=config.seed)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "CRD":
        """Size the embeddings from the pooled widths and the memory bank ``[n_data, crd_feat_dim]`` by the training
        set (``train_dataset.n_data`` of a ``ContrastiveDataset``, else ``len(train_dataset)``).

        Raises ``RecipeError`` when there is no training set or its batches lack ``contrast_index`` (it was not
        prepared by ``prepare_train_dataset``).
        """
        if train_dataset is None or example_batch is None or "contrast_index" not in example_batch:
            raise RecipeError(
                "crd needs the training set prepared by CRD.prepare_train_dataset (batches with index and "
                "contrast_index, and its size for the memory bank); pass the training set to DistillationTrainer"
            )
        n_data = training_set_size(train_dataset)
        return cls(
            pooled_width(student, example_batch, cls.name),
            pooled_width(teacher, example_batch, cls.name),
            n_data,
            feat_dim=config.crd_feat_dim,
            temperature=config.crd_nce_t,
            momentum=config.crd_nce_m,
        )

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        f_s, f_t = pooled_fp32(student_out), pooled_fp32(teacher_out)
        with full_precision(f_s):
            v1 = l2_normalize(self.embed_s(f_s))
            v2 = l2_normalize(self.embed_t(f_t))
            out_v1, out_v2 = self.contrast(v1, v2, batch["index"], batch["contrast_index"])
            n_data = self.contrast.n_data
            return {"crd": contrast_loss(out_v1, n_data) + contrast_loss(out_v2, n_data)}
