"""Loading (and saving) SegAnyPET checkpoints.

Accepted layouts: a bare state dict, or a dict holding it under ``model_state_dict`` (what the
SAM-Med3D/SegAnyPET training scripts write) or ``state_dict``. A ``module.`` prefix (DataParallel /
DDP) is stripped. Loading is strict: every parameter must be present with the right shape and
nothing may be left over; a mismatch raises :class:`CheckpointMismatchError` naming the keys.

The variant is detected from tensor shapes (width, depth, heads from the relative-position tables,
global blocks, prompt width, ...). Our own checkpoints also record their config under
``seganypet_config``. Decoder head counts cannot be seen in shapes; 8 is assumed, as in the paper.

Security: the official training scripts pickle the whole ``argparse.Namespace`` of their
command-line arguments (plus optimizer and scheduler state) into the file. Unpickling arbitrary
objects can run code, so files are first read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers, with ``argparse.Namespace`` additionally allowed (it only
carries a ``__dict__``). If a file needs anything else, loading stops with an error that lists the
offending globals; ``weights_only=False`` is used only when the caller passes ``trust_pickle=True``
(the engine's ``SEGANYPET_TRUST_CHECKPOINT=1``) for a file the operator trusts.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from worker.seganypet.model import VARIANTS, VIT_B_ORI, Sam3D, Sam3DConfig, variant_name

STATE_DICT_KEYS = ("model_state_dict", "state_dict")
CONFIG_KEY = "seganypet_config"
VARIANT_KEY = "seganypet_variant"
METADATA_KEY = "seganypet_metadata"
DDP_PREFIX = "module."
_LISTED_KEYS = 12


class CheckpointError(RuntimeError):
    """The file cannot be read as a SegAnyPET checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's parameters do not match the network (missing, unexpected, wrong shape)."""

    def __init__(
        self,
        variant: str,
        missing: list[str],
        unexpected: list[str],
        wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.variant = variant
        self.missing = missing
        self.unexpected = unexpected
        self.wrong_shape = wrong_shape
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"checkpoint does not match the SegAnyPET network ({self.variant}):"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_listing(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_listing(self.unexpected)}")
        if self.wrong_shape:
            shapes = [
                f"{name} (checkpoint {tuple(got)}, network {tuple(want)})"
                for name, got, want in self.wrong_shape
            ]
            parts.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
        return " ".join(parts)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED_KEYS])
    more = len(items) - _LISTED_KEYS
    return shown + (f", ... and {more} more" if more > 0 else "")


@dataclass
class LoadedCheckpoint:
    model: Sam3D
    variant: str  # "vit_b_ori", "demo" or "custom"
    config: Sam3DConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def read_checkpoint_file(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """The unpickled object of ``path`` (see the module docstring for what is trusted)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SegAnyPET checkpoint {path} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            unsafe = _unsafe_globals(path)
            if unsafe is None:
                first_line = (
                    str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                )
                raise CheckpointError(
                    f"cannot read SegAnyPET checkpoint {path} with the safe loader ({first_line}); "
                    "if it is a legacy-format file that you trust, load it with trust_pickle=True"
                ) from error
            raise CheckpointError(_untrusted_message(path, unsafe)) from error
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"cannot read SegAnyPET checkpoint {path}: {error}") from error
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"cannot read SegAnyPET checkpoint {path}: {error}") from error


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals the safe loader would refuse, or None when the file is not a readable torch archive."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip-format torch file, or corrupt
        return None
    return [name for name in found if name != "argparse.Namespace"] or None


def _untrusted_message(path: Path, unsafe: list[str]) -> str:
    return (
        f"{path} holds pickled Python objects beyond tensors and argparse.Namespace ({', '.join(unsafe)}); "
        "the safe loader refuses them because unpickling can run code. Official SegAnyPET "
        "checkpoints pickle their training arguments and optimizer state. If you trust this file, "
        "load it with trust_pickle=True (SEGANYPET_TRUST_CHECKPOINT=1), or re-save only its "
        "model_state_dict."
    )


def extract_state_dict(obj: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The parameter dict (``module.`` prefix removed) and the rest of the container."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"a SegAnyPET checkpoint must be a dict, got {type(obj).__name__}")
    container: dict[str, Any] = {}
    state: Any = obj
    for key in STATE_DICT_KEYS:
        if key in obj:
            state = obj[key]
            container = {k: v for k, v in obj.items() if k != key}
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError("the checkpoint's state dict is empty or not a dict")
    non_tensors = [str(k) for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(
            "the checkpoint is neither a state dict nor a dict with 'model_state_dict'/'state_dict' "
            f"(top-level keys: {_listing(sorted(str(k) for k in obj))}; non-tensor entries: {_listing(non_tensors)})"
        )
    return {_strip_prefix(str(k)): v for k, v in state.items()}, container


def _strip_prefix(name: str) -> str:
    return name[len(DDP_PREFIX) :] if name.startswith(DDP_PREFIX) else name


def infer_config(state: Mapping[str, Tensor]) -> Sam3DConfig:
    """Network config from parameter shapes. Raises KeyError when a key it needs is absent."""
    patch = state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    grid = int(state["image_encoder.pos_embed"].shape[1])
    depth = _count_indices(state, "image_encoder.blocks.")
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_d"].shape[1])
    table_lengths = [int(state[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0]) for i in range(depth)]
    global_indexes = tuple(i for i, length in enumerate(table_lengths) if length == 2 * grid - 1)
    window_lengths = [length for length in table_lengths if length != 2 * grid - 1]
    window = (window_lengths[0] + 1) // 2 if window_lengths else VIT_B_ORI.encoder_window_size
    mlp_dim = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    prompt_dim = int(state["image_encoder.neck.0.weight"].shape[0])
    cross_dim = int(
        state["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"].shape[0]
    )
    inferred = Sam3DConfig(
        img_size=grid * patch_size,
        patch_size=patch_size,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_mlp_ratio=mlp_dim / embed_dim,
        encoder_window_size=window,
        encoder_global_attn_indexes=global_indexes,
        prompt_embed_dim=prompt_dim,
        mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        decoder_depth=_count_indices(state, "mask_decoder.transformer.layers."),
        decoder_num_heads=VIT_B_ORI.decoder_num_heads,
        decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        decoder_attention_downsample_rate=prompt_dim // cross_dim,
        num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        iou_head_depth=_count_indices(state, "mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
    )
    # The crop spacing is not in the weights: a known network takes its variant's spacing.
    for known in VARIANTS.values():
        if replace(inferred, crop_spacing_mm=known.crop_spacing_mm) == known:
            return known
    return inferred


def _count_indices(state: Mapping[str, Tensor], prefix: str) -> int:
    indices = {int(name[len(prefix) :].split(".", 1)[0]) for name in state if name.startswith(prefix)}
    if not indices:
        raise KeyError(prefix)
    return max(indices) + 1


def check_state_dict(model: Sam3D, state: Mapping[str, Tensor], variant: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = sorted(name for name in state if name not in expected)
    wrong_shape = [
        (name, tuple(state[name].shape), tuple(tensor.shape))
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(variant, missing, unexpected, wrong_shape)


def model_from_checkpoint(
    obj: Any, *, expected_variant: str | None = None, source: str = ""
) -> LoadedCheckpoint:
    """Build the matching network and load the weights of an unpickled checkpoint strictly."""
    state, container = extract_state_dict(obj)
    config = _config_for(state, container)
    variant = variant_name(config)
    if expected_variant is not None and variant != expected_variant:
        raise CheckpointError(f"expected a {expected_variant} checkpoint, found {variant} ({config})")
    # Built on the meta device: no time spent on a random init that the weights replace anyway.
    with torch.device("meta"):
        model = Sam3D(config)
    check_state_dict(model, state, variant)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.float().eval()
    metadata = container.get(METADATA_KEY) if isinstance(container.get(METADATA_KEY), dict) else {}
    return LoadedCheckpoint(
        model=model, variant=variant, config=config, metadata=dict(metadata), source=source
    )


def _config_for(state: Mapping[str, Tensor], container: Mapping[str, Any]) -> Sam3DConfig:
    stored = container.get(CONFIG_KEY)
    if isinstance(stored, dict):
        try:
            return Sam3DConfig.from_dict(stored)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"the checkpoint's {CONFIG_KEY} is invalid: {error}") from error
    try:
        return infer_config(state)
    except (KeyError, IndexError):
        # Too broken to tell; compare against the published network so the error lists what is missing.
        return VIT_B_ORI


def load_checkpoint(
    path: str | Path,
    *,
    trust_pickle: bool = False,
    expected_variant: str | None = None,
) -> LoadedCheckpoint:
    """Read ``path`` and return the network with its weights loaded strictly (on the CPU, eval mode)."""
    obj = read_checkpoint_file(path, trust_pickle=trust_pickle)
    return model_from_checkpoint(obj, expected_variant=expected_variant, source=str(path))


def save_checkpoint(model: Sam3D, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> None:
    """Write a checkpoint that :func:`load_checkpoint` reads without trusting pickles.

    Only tensors and plain Python values go in, so ``torch.load(weights_only=True)`` accepts it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model_state_dict": {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()},
        CONFIG_KEY: model.config.to_dict(),
        VARIANT_KEY: variant_name(model.config),
        METADATA_KEY: dict(metadata or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
