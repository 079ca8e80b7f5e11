"""Prompt encoder of SAM-Med3D / SegAnyPET: points and the previous low-resolution mask.

Conventions kept from the reference, because the weights were trained with them:

* Point coordinates are crop voxel indices in tensor-axis order; 0.5 is added (voxel centre) and they
  are divided by the crop size before the random-Fourier encoding.
* The Fourier feature is ``[sin, cos, sin]`` (sin twice), so ``embed_dim // 3`` frequencies fill
  ``embed_dim`` channels.
* The dense positional grid swaps axes 0 and 1 relative to how point coordinates are read: the token
  at grid index (a, b, c) is encoded as the point ((b+.5)/n, (a+.5)/n, (c+.5)/n).
* Without a box, one padding point labelled -1 ("not a point") is appended.

Boxes are not encoded. The published box path adds ``point_embeddings[2]`` and ``[3]``, which the
model does not have (only the negative/positive embeddings 0 and 1 exist in the checkpoints), so it
cannot run and was never trained. The engine uses a box as a crop limit and as a point instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worker.seganypet.image_encoder import Grid3, LayerNorm3d

NOT_A_POINT = -1
NEGATIVE = 0
POSITIVE = 1


class PositionEmbeddingRandom3D(nn.Module):
    """Positional encoding with random spatial frequencies (a fixed Gaussian matrix buffer)."""

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((3, num_pos_feats)))

    def _encode(self, coords: Tensor) -> Tensor:
        """Coordinates in [0, 1], shape (..., 3) → features (..., 3 · num_pos_feats)."""
        # sin() of arguments up to ~2π·|G|·3 needs float32; bf16 autocast would wreck the encoding.
        with torch.autocast(device_type=coords.device.type, enabled=False):
            centred = 2 * coords.float() - 1
            angles = 2 * math.pi * (centred @ self.positional_encoding_gaussian_matrix.float())
            return torch.cat([torch.sin(angles), torch.cos(angles), torch.sin(angles)], dim=-1)

    def dense(self, size: Grid3) -> Tensor:
        """Encoding of every token of a grid: (C, X, Y, Z), with the reference's axis-0/1 swap."""
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones(size, device=device, dtype=torch.float32)
        along_0 = ones.cumsum(dim=0) - 0.5
        along_1 = ones.cumsum(dim=1) - 0.5
        along_2 = ones.cumsum(dim=2) - 0.5
        coords = torch.stack([along_1 / size[0], along_0 / size[1], along_2 / size[2]], dim=-1)
        return self._encode(coords).permute(3, 0, 1, 2)

    def encode_points(self, coords: Tensor, image_size: Grid3) -> Tensor:
        """(B, N, 3) coordinates in voxels of an ``image_size`` crop → (B, N, C)."""
        scale = torch.tensor(image_size, dtype=torch.float32, device=coords.device)
        return self._encode(coords.float() / scale)


class PromptEncoder3D(nn.Module):
    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: Grid3,
        input_image_size: Grid3,
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        if embed_dim % 3:
            raise ValueError(f"prompt embed_dim must be a multiple of 3 ([sin, cos, sin]), got {embed_dim}")
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        # Index 0: negative click, 1: positive click.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(2))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            nn.GELU(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        # Present in the checkpoints but unused by the reference inference, which always feeds a mask
        # (zeros on the first click).
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def mask_input_size(self) -> Grid3:
        """Size of the previous-mask logits the encoder takes: 4x the embedding grid (32³ for 128³)."""
        e = self.image_embedding_size
        return (4 * e[0], 4 * e[1], 4 * e[2])

    def get_dense_pe(self) -> Tensor:
        """(1, C, X, Y, Z) positional encoding of the image-embedding grid."""
        if not torch.is_inference_mode_enabled():
            return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)
        # Constant for given weights, and a sizeable part of a corrective click on a CPU: kept while
        # the Gaussian matrix (a buffer, replaced by load_state_dict) stays the same tensor.
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        key = (matrix.data_ptr(), matrix._version, str(matrix.device))
        cached = self.__dict__.get("_dense_pe")
        if cached is None or cached[0] != key:
            cached = (key, self.pe_layer.dense(self.image_embedding_size).unsqueeze(0))
            self.__dict__["_dense_pe"] = cached
        return cached[1]

    def embed_points(self, coords: Tensor, labels: Tensor, pad: bool = True) -> Tensor:
        """(B, N, 3) crop voxel indices and (B, N) labels (1 positive, 0 negative) → (B, N[+1], C)."""
        coords = coords.float() + 0.5
        labels = labels.long()
        if pad:
            batch = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(batch, 1, 3)], dim=1)
            labels = torch.cat([labels, labels.new_full((batch, 1), NOT_A_POINT)], dim=1)
        encoding = self.pe_layer.encode_points(coords, self.input_image_size)
        is_padding = (labels == NOT_A_POINT).unsqueeze(-1)
        encoding = torch.where(is_padding, self.not_a_point_embed.weight, encoding)
        encoding = encoding + (labels == NEGATIVE).unsqueeze(-1) * self.point_embeddings[0].weight
        return encoding + (labels == POSITIVE).unsqueeze(-1) * self.point_embeddings[1].weight

    def embed_masks(self, masks: Tensor) -> Tensor:
        return self.mask_downscaling(masks)

    def forward(self, points: tuple[Tensor, Tensor] | None, masks: Tensor | None) -> tuple[Tensor, Tensor]:
        """Sparse (B, N, C) point tokens and dense (B, C, X, Y, Z) mask embedding."""
        batch = 1
        if points is not None:
            batch = points[0].shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        device = self.not_a_point_embed.weight.device
        if points is None:
            sparse = torch.empty((batch, 0, self.embed_dim), device=device)
        else:
            sparse = self.embed_points(*points, pad=True)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(
                batch, -1, *self.image_embedding_size
            )
        return sparse, dense
