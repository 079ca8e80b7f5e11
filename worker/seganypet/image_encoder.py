"""3D ViT image encoder of SAM-Med3D / SegAnyPET.

For ``vit_b_ori`` a 128³ crop becomes 8³ tokens of width 768 (16³ patches), passes 12 transformer
blocks and a convolutional neck, and comes out as a (B, 384, 8, 8, 8) image embedding.

Three details decide whether official weights give the published output:

* Relative position bias is decomposed per axis and computed from the *unscaled* query, while the
  query-key product is scaled by ``head_dim ** -0.5``.
* The reference's 3D port broadcasts the three bias terms onto other key axes than intended (see
  :func:`decomposed_rel_pos_bias`); the weights were trained with that, so it is kept.
* Non-global blocks use window size 14, larger than the 8³ token grid. The reference pads the tokens
  with zeros to one 14³ window and attends over all 14³ keys without a mask, so every real token also
  attends to 2,232 padding tokens (whose keys and values equal the qkv bias), and through the bias
  quirk padded queries enter the bias of real ones. :class:`Block3D` reproduces this exactly; when the
  grid fits in one window it skips computing outputs for padded queries (they are cropped away), which
  is 5x less attention work.

Checked against the published SAM-Med3D/SegAnyPET modules with identical random weights: image
embeddings agree to 5e-6 (float32, 128³), single blocks to 1e-13 (float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Grid3 = tuple[int, int, int]


class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, D, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Statistics in float32: under bf16 autocast the variance of 384 channels loses too much.
        x32 = x.float()
        mean = x32.mean(1, keepdim=True)
        var = (x32 - mean).pow(2).mean(1, keepdim=True)
        normalised = (x32 - mean) / torch.sqrt(var + self.eps)
        out = self.weight[:, None, None, None] * normalised + self.bias[:, None, None, None]
        return out.to(x.dtype)


class MLPBlock(nn.Module):
    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class PatchEmbed3D(nn.Module):
    """Non-overlapping cubic patches → tokens, channels last: (B, D, H, W, C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


def relative_position_embeddings(table: Tensor, window: int, q_len: int, k_len: int) -> Tensor:
    """Embeddings (q_len, k_len, C) for the offsets ``q - k`` of positions inside one window.

    ``table`` holds one row per offset in ``[-(window - 1), window - 1]``; a table trained for another
    window is resized linearly, as the reference does.
    """
    span = 2 * window - 1
    if table.shape[0] != span:
        table = F.interpolate(table.T.unsqueeze(0), size=span, mode="linear").squeeze(0).T
    q_pos = torch.arange(q_len, device=table.device)[:, None]
    k_pos = torch.arange(k_len, device=table.device)[None, :]
    return table[q_pos - k_pos + window - 1]


def decomposed_rel_pos_bias(
    q: Tensor,
    q_rows: Tensor,
    rel_pos: tuple[Tensor, Tensor, Tensor],
    key_size: int,
) -> Tensor:
    """Attention bias (B, Nq, Nk) from the (d, h, w) relative position tables, as the reference adds it.

    ``q`` is (B, Qd, Qh, Qw, C), unscaled. Keys span a cube of ``key_size`` per axis; queries occupy
    its low corner (fewer than the keys only when padded queries are skipped). ``q_rows`` are the same
    queries with the w axis extended to ``key_size``, positions beyond ``Qw`` holding the query of a
    zero (padding) token.

    The reference's 3D port of SAM's decomposed bias broadcasts its three terms onto other axes than
    intended: for query (d, h, w) and key (kd, kh, kw) it adds

        q[d, h, w]·Rd[d - kw] + q[d, h, kd]·Rh[h - kw] + q[d, h, kh]·Rw[kh - kw]

    instead of q[d, h, w]·(Rd[d - kd] + Rh[h - kh] + Rw[w - kw]). The official weights were trained
    with exactly this, so it is reproduced here; it needs a cubic key grid, as the reference's
    broadcasting does.
    """
    batch, q_d, q_h, q_w, channels = q.shape
    r_d = relative_position_embeddings(rel_pos[0], window=key_size, q_len=q_d, k_len=key_size).to(q.dtype)
    r_h = relative_position_embeddings(rel_pos[1], window=key_size, q_len=q_h, k_len=key_size).to(q.dtype)
    r_w = relative_position_embeddings(rel_pos[2], window=key_size, q_len=key_size, k_len=key_size).to(
        q.dtype
    )
    term_d = torch.einsum("bdhwc,dkc->bdhwk", q, r_d)
    term_h = torch.einsum("bdhjc,hkc->bdhjk", q_rows, r_h)
    term_w = torch.einsum("bdhjc,jkc->bdhjk", q_rows, r_w)
    # The h and w terms do not depend on the query's w: add them at 1/Qw of the full size first.
    hw_terms = term_h[:, :, :, None, :, None, :] + term_w[:, :, :, None, None, :, :]
    if torch.is_grad_enabled() and (q.requires_grad or any(t.requires_grad for t in rel_pos)):
        # Training: ``out=`` does not support autograd; the same sum, made contiguous afterwards.
        bias = (hw_terms + term_d[:, :, :, :, None, None, :]).contiguous()
        return bias.view(batch, q_d * q_h * q_w, key_size**3)
    # An explicit contiguous output: broadcasting may otherwise pick strides that force a copy on reshape.
    bias = q.new_empty((batch, q_d, q_h, q_w, key_size, key_size, key_size))
    torch.add(hw_terms, term_d[:, :, :, :, None, None, :], out=bias)
    return bias.view(batch, q_d * q_h * q_w, key_size**3)


class Attention3D(nn.Module):
    """Multi-head self-attention over a token grid with decomposed relative position bias."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, rel_pos_grid: Grid3) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Zero-initialised like the reference; official weights overwrite them.
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * rel_pos_grid[0] - 1, self.head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_grid[1] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_grid[2] - 1, self.head_dim))

    def forward(self, x: Tensor, key_size: int | None = None) -> Tensor:
        """Attend over the cubic token grid ``x`` (B, S, S, S, C).

        With ``key_size`` > S, keys and values are those of ``x`` zero-padded to ``key_size``³ at the
        high end of each axis, which is what one zero-padded window gives; only the real positions
        are computed as queries.
        """
        batch, d, h, w, dim = x.shape
        if not d == h == w:
            raise ValueError(f"the reference's relative position bias needs a cubic grid, got {(d, h, w)}")
        size = key_size or d
        n_q = d * h * w
        qkv = self.qkv(x).reshape(batch, n_q, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        q_grid = q.reshape(batch * self.num_heads, d, h, w, self.head_dim)
        q_rows = q_grid
        if size != d:
            k, v = self._pad_keys_and_values(k, v, d, size)
            q_rows = self._pad_query_rows(q_grid, size)
        bias = decomposed_rel_pos_bias(q_grid, q_rows, (self.rel_pos_d, self.rel_pos_h, self.rel_pos_w), size)
        bias = bias.view(batch, self.num_heads, n_q, -1).to(q.dtype)
        # SDPA's default scale is head_dim ** -0.5, the reference's; the bias is added unscaled.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(batch, d, h, w, dim)
        return self.proj(out)

    def _projection_of_zero_token(self, part: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """(heads, head_dim) q (0), k (1) or v (2) of a zero token: the qkv bias."""
        dim = self.num_heads * self.head_dim
        if self.qkv.bias is None:
            return torch.zeros(self.num_heads, self.head_dim, dtype=dtype, device=device)
        return self.qkv.bias[part * dim : (part + 1) * dim].view(self.num_heads, self.head_dim).to(dtype)

    def _pad_query_rows(self, q_grid: Tensor, size: int) -> Tensor:
        groups, d, h, w, head_dim = q_grid.shape
        batch = groups // self.num_heads
        fill = self._projection_of_zero_token(0, q_grid.dtype, q_grid.device)
        rows = fill.view(1, self.num_heads, 1, 1, 1, head_dim).expand(batch, -1, d, h, size, -1).clone()
        rows[:, :, :, :, :w] = q_grid.view(batch, self.num_heads, d, h, w, head_dim)
        return rows.view(groups, d, h, size, head_dim)

    def _pad_keys_and_values(self, k: Tensor, v: Tensor, grid: int, size: int) -> tuple[Tensor, Tensor]:
        batch, heads, _, head_dim = k.shape
        padded = []
        for part, real in ((1, k), (2, v)):
            fill = self._projection_of_zero_token(part, real.dtype, real.device)
            full = fill.view(1, heads, 1, 1, 1, head_dim).expand(batch, -1, size, size, size, -1).clone()
            full[:, :, :grid, :grid, :grid] = real.view(batch, heads, grid, grid, grid, head_dim)
            padded.append(full.view(batch, heads, -1, head_dim))
        return padded[0], padded[1]


def window_partition(x: Tensor, window: int) -> tuple[Tensor, Grid3]:
    """Zero-pad (B, D, H, W, C) to multiples of ``window`` and cut it into (B·nW, w, w, w, C) windows."""
    batch, d, h, w, channels = x.shape
    pad_d, pad_h, pad_w = ((window - size % window) % window for size in (d, h, w))
    if pad_d or pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h, 0, pad_d))
    padded: Grid3 = (d + pad_d, h + pad_h, w + pad_w)
    nd, nh, nw = (size // window for size in padded)
    x = x.view(batch, nd, window, nh, window, nw, window, channels)
    windows = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window, window, window, channels)
    return windows, padded


def window_unpartition(windows: Tensor, window: int, padded: Grid3, grid: Grid3) -> Tensor:
    """Inverse of :func:`window_partition`, cropping the padding away."""
    nd, nh, nw = (size // window for size in padded)
    batch = windows.shape[0] // (nd * nh * nw)
    x = windows.view(batch, nd, nh, nw, window, window, window, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, *padded, -1)
    return x[:, : grid[0], : grid[1], : grid[2], :].contiguous()


class Block3D(nn.Module):
    """Pre-norm transformer block with windowed (``window_size`` > 0) or global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        window_size: int,
        grid: Grid3,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        rel_pos_grid = (window_size,) * 3 if window_size > 0 else grid
        self.attn = Attention3D(dim, num_heads, qkv_bias, rel_pos_grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size
        # Exact shortcut for a grid inside one window; False forces the literal pad-and-partition path.
        self.skip_padded_queries = True

    def forward(self, x: Tensor) -> Tensor:
        x = x + self._attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def _attend(self, x: Tensor) -> Tensor:
        window = self.window_size
        if window == 0:
            return self.attn(x)
        grid: Grid3 = (x.shape[1], x.shape[2], x.shape[3])
        if self.skip_padded_queries and grid[0] == grid[1] == grid[2] <= window:
            return self.attn(x, key_size=window)
        windows, padded = window_partition(x, window)
        return window_unpartition(self.attn(windows), window, padded, grid)


class ImageEncoderViT3D(nn.Module):
    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_chans: int = 1,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        out_chans: int,
        qkv_bias: bool = True,
        window_size: int,
        global_attn_indexes: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid_size = img_size // patch_size
        grid: Grid3 = (grid_size, grid_size, grid_size)
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                window_size=0 if i in global_attn_indexes else window_size,
                grid=grid,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward(self, image: Tensor) -> Tensor:
        """(B, 1, S, S, S) normalised crop → (B, out_chans, S/p, S/p, S/p) embedding."""
        expected = (self.img_size,) * 3
        if tuple(image.shape[-3:]) != expected:
            # The absolute position embedding is not interpolated (as in the reference).
            raise ValueError(f"image encoder expects a {expected} crop, got {tuple(image.shape[-3:])}")
        x = self.patch_embed(image) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))
