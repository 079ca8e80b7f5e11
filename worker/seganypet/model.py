"""The SegAnyPET network (SAM-Med3D layout): image encoder, prompt encoder, mask decoder.

State-dict names match the official checkpoints exactly (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``; 324 entries for ``vit_b_ori``). The reference's ``pixel_mean``/``pixel_std``
buffers are non-persistent and unused for 3D, so they are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from worker.seganypet.image_encoder import ImageEncoderViT3D
from worker.seganypet.mask_decoder import MaskDecoder3D
from worker.seganypet.prompt_encoder import PromptEncoder3D


@dataclass(frozen=True)
class Sam3DConfig:
    img_size: int = 128
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_window_size: int = 14
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    prompt_embed_dim: int = 384
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    # Not a network weight: the isotropic voxel size the crop is resampled to (the paper's 1.5 mm).
    crop_spacing_mm: float = 1.5

    @property
    def embedding_size(self) -> int:
        """Tokens per axis of the image embedding (8 for a 128³ crop)."""
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Voxels per axis of the decoder's logits and of the previous-mask input (32)."""
        return 4 * self.embedding_size

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sam3DConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SegAnyPET config fields: {unknown}")
        values = dict(data)
        if "encoder_global_attn_indexes" in values:
            values["encoder_global_attn_indexes"] = tuple(values["encoder_global_attn_indexes"])
        return cls(**values)


VIT_B_ORI = Sam3DConfig()

# Same code path, small enough to train and run on a CPU: a 64³ crop at 2 mm (128 mm field of view)
# with 8³ patches keeps the 8³ token grid, and the 32³ logits are 4 mm cells, close to a PET voxel (at
# 128³/1.5 mm they are 6 mm, too coarse for a 10 mm lesion). Windows of 4 tokens tile the 8³ grid
# without the padding a 14-token window costs. Decoder heads stay at 8: head counts are not visible
# in a state dict, and 8 is what checkpoint loading assumes.
DEMO = Sam3DConfig(
    img_size=64,
    patch_size=8,
    crop_spacing_mm=2.0,
    encoder_window_size=4,
    encoder_embed_dim=192,
    encoder_depth=4,
    encoder_num_heads=6,
    encoder_global_attn_indexes=(1, 3),
    prompt_embed_dim=192,
    decoder_mlp_dim=768,
    iou_head_hidden_dim=128,
)

VARIANTS: dict[str, Sam3DConfig] = {"vit_b_ori": VIT_B_ORI, "demo": DEMO}


def variant_name(config: Sam3DConfig) -> str:
    """Name of a known variant with this config, else ``"custom"``."""
    for name, known in VARIANTS.items():
        if known == config:
            return name
    return "custom"


class Sam3D(nn.Module):
    def __init__(self, config: Sam3DConfig = VIT_B_ORI) -> None:
        super().__init__()
        self.config = config
        size = config.embedding_size
        self.image_encoder = ImageEncoderViT3D(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_num_heads,
            mlp_ratio=config.encoder_mlp_ratio,
            out_chans=config.prompt_embed_dim,
            window_size=config.encoder_window_size,
            global_attn_indexes=config.encoder_global_attn_indexes,
        )
        self.prompt_encoder = PromptEncoder3D(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(size, size, size),
            input_image_size=(config.img_size,) * 3,
            mask_in_chans=config.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder3D(
            transformer_dim=config.prompt_embed_dim,
            transformer_depth=config.decoder_depth,
            transformer_num_heads=config.decoder_num_heads,
            transformer_mlp_dim=config.decoder_mlp_dim,
            attention_downsample_rate=config.decoder_attention_downsample_rate,
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        )

    def encode_image(self, image: Tensor) -> Tensor:
        """(B, 1, 128, 128, 128) z-scored crop → (B, C, 8, 8, 8) embedding."""
        return self.image_encoder(image)

    def embed_prompts(
        self,
        image_embedding: Tensor,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        mask_logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sparse point tokens and dense mask embedding for :meth:`decode` (arguments as there)."""
        batch = image_embedding.shape[0] if point_coords is None else point_coords.shape[0]
        if mask_logits is None:
            low = self.config.low_res_size
            mask_logits = image_embedding.new_zeros((batch, 1, low, low, low), dtype=torch.float32)
        points = None if point_coords is None or point_labels is None else (point_coords, point_labels)
        return self.prompt_encoder(points=points, masks=mask_logits)

    def decode(
        self,
        image_embedding: Tensor,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        mask_logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Single-mask prediction: logits (B, 1, 32, 32, 32) and IoU estimate (B, 1).

        ``point_coords`` are (B, N, 3) crop voxel indices in tensor-axis order (the encoder adds 0.5),
        ``point_labels`` (B, N) with 1 positive, 0 negative. ``mask_logits`` are the previous
        low-resolution logits; ``None`` means zeros, which is what the reference feeds on a first
        click (its ``no_mask_embed`` is never used at inference).
        """
        sparse, dense = self.embed_prompts(image_embedding, point_coords, point_labels, mask_logits)
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )

    def forward(
        self,
        image: Tensor,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        mask_logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        return self.decode(self.encode_image(image), point_coords, point_labels, mask_logits)


def build_sam3d(config: Sam3DConfig | str = VIT_B_ORI) -> Sam3D:
    if isinstance(config, str):
        if config not in VARIANTS:
            raise ValueError(f"unknown SegAnyPET variant {config!r}; known: {sorted(VARIANTS)}")
        config = VARIANTS[config]
    return Sam3D(config)


def build_sam3d_vit_b_ori() -> Sam3D:
    """The published architecture (~100.5 M parameters), randomly initialised: load weights next."""
    return Sam3D(VIT_B_ORI)


def build_sam3d_demo() -> Sam3D:
    """The small demo variant (same code path), randomly initialised."""
    return Sam3D(DEMO)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
