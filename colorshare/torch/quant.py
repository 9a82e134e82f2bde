"""Weight quantization of a stored tensor: round-to-nearest and GPTQ, packed codes, bytes, and dequantization.

A stored matrix ``W`` (rows x cols; a linear layer's d_out x d_in, or a factor) is kept in ``bits`` in
{8, 4, 3, 2} as integer codes with one scale per group of ``group`` consecutive inputs (columns) of a row:

- 8 bits: symmetric, one float16 scale per row (``group = cols``), codes in -127..127 (torch's int8 weight-only
  kernel takes exactly this);
- 4, 3, 2 bits: asymmetric, a float16 scale and a float16 zero point per group, codes in 0 .. 2^bits - 1,
  ``w = (q - z) * s``; the group size divides ``cols`` (:func:`group_size`).

Bytes (:func:`stored_bytes`): the packed codes (:func:`packed_bytes`: ``rows * cols * bits / 8`` rounded up) plus
2 bytes per scale and per zero point: 4 bits in groups of 64 are 4.5 bits per weight. 16 bits is the unquantized
tensor (2 bytes each).

GPTQ (:func:`gptq`) quantizes column by column and feeds each column's error forward through the inverse of the
input covariance (``H = E[x x^T]``, the layer's own K-FAC input factor), which minimises ``tr(E H E^T)`` for the
error ``E`` greedily; its recipe for a degenerate ``H``: dead inputs (zero diagonal) get a unit diagonal and zero
weights, and the diagonal is damped by 1 % of its mean. Computed in float64 on the tensor's device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["BITS", "QuantSpec", "Quantized", "QuantLinear", "group_size", "stored_bytes", "rtn", "gptq", "gptq_widths",
           "pack", "unpack", "bits_per_weight", "exact_products"]

BITS = (16, 8, 4, 3, 2)
"""The bit-widths a stored tensor may take (16: kept as is, in a 16-bit dtype)."""

GROUPS = (128, 64, 32)
"""Preferred group sizes (inputs per scale), largest first; the first that divides the inputs is used."""

DEFAULT_GROUP = 64
"""The group size of sub-8-bit codes where it divides the inputs: 4 bits are then 4.5 bits per weight."""


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is stored: ``bits`` and ``group`` (inputs per scale; the whole row at 8 bits)."""

    bits: int
    group: int

    @property
    def symmetric(self) -> bool:
        return self.bits == 8


def group_size(cols: int, bits: int, preferred: int = DEFAULT_GROUP) -> int:
    """The group of a ``bits``-bit tensor with ``cols`` inputs: the whole row at 8 (and 16) bits, else
    ``preferred`` where it divides ``cols``, else the largest of :data:`GROUPS` that does, else the whole row."""
    if bits >= 8:
        return cols
    for g in (preferred, *GROUPS):
        if g <= cols and cols % g == 0:
            return g
    return cols


def packed_bytes(values: int, bits: int) -> int:
    """Bytes ``values`` codes take packed (:func:`pack`): whole groups of 8 / bits values, 8 values in 3 bytes at 3
    bits."""
    if bits >= 8:
        return values * bits // 8
    per = 8 if bits == 3 else 8 // bits
    return math.ceil(values / per) * per * bits // 8


def stored_bytes(rows: int, cols: int, bits: int, group: int | None = None) -> int:
    """Bytes a rows x cols tensor takes at ``bits``: packed codes plus float16 scales (and zero points below 8
    bits); 16 bits: 2 bytes a value."""
    if bits >= 16:
        return 2 * rows * cols
    g = group or group_size(cols, bits)
    groups = rows * math.ceil(cols / g)
    return packed_bytes(rows * cols, bits) + groups * (2 if bits == 8 else 4)


def bits_per_weight(nbytes: float, weights: int) -> float:
    """Average bits per weight of ``nbytes`` bytes storing ``weights`` values (scales included)."""
    return 8.0 * nbytes / max(1, weights)


@dataclass
class Quantized:
    """A quantized matrix: integer ``codes`` (rows x cols, int16 for any bit-width here; :func:`pack` packs them),
    float16 ``scales`` and ``zeros`` (rows x groups; zeros None at 8 bits) and its spec."""

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    spec: QuantSpec

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The matrix the codes stand for (rows x cols)."""
        rows, cols = self.codes.shape
        g = self.spec.group
        s = self.scales.to(dtype).repeat_interleave(g, dim=1)[:, :cols]
        q = self.codes.to(dtype)
        if self.zeros is None:
            return q * s
        z = self.zeros.to(dtype).repeat_interleave(g, dim=1)[:, :cols]
        return (q - z) * s


def _grid(W: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scales (and zero points) of ``W``'s groups (rows x groups), float16-representable, from their ranges."""
    rows, cols = W.shape
    g = spec.group
    Wg = W.reshape(rows, cols // g, g)
    if spec.symmetric:
        s = Wg.abs().amax(-1) / 127.0
        s = torch.where(s > 0, s, torch.ones_like(s)).to(torch.float16)
        return s, None
    top = 2**spec.bits - 1
    lo = Wg.amin(-1).clamp(max=0)
    hi = Wg.amax(-1).clamp(min=0)
    s = (hi - lo) / top
    s = torch.where(s > 0, s, torch.ones_like(s)).to(torch.float16)
    z = torch.round(-lo / s.to(lo.dtype)).clamp(0, top).to(torch.float16)
    return s, z


def _round(w: torch.Tensor, s: torch.Tensor, z: torch.Tensor | None, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and dequantized values of columns ``w`` (rows x k) under per-row scale ``s`` and zero ``z``
    (rows x 1)."""
    s = s.to(w.dtype)
    if z is None:
        q = torch.round(w / s).clamp(-127, 127)
        return q, q * s
    z = z.to(w.dtype)
    q = torch.clamp(torch.round(w / s) + z, 0, 2**bits - 1)
    return q, (q - z) * s


def rtn(W: torch.Tensor, bits: int, group: int | None = None) -> Quantized:
    """Round-to-nearest ``W`` (rows x cols) to ``bits`` in groups of ``group`` inputs (default
    :func:`group_size`)."""
    spec = QuantSpec(bits, group or group_size(W.shape[1], bits))
    W = W.detach().to(torch.float64)
    s, z = _grid(W, spec)
    g = spec.group
    rows, cols = W.shape
    srep = s.repeat_interleave(g, dim=1)
    zrep = None if z is None else z.repeat_interleave(g, dim=1)
    q, _ = _round(W, srep, zrep, bits)
    return Quantized(q.to(torch.int16), s, z, spec)


def gptq(W: torch.Tensor, H: torch.Tensor, bits: int, group: int | None = None, damp: float = 0.01,
         block: int = 128, actorder: bool = True) -> Quantized:
    """GPTQ of ``W`` (rows x cols) under the input covariance ``H`` (cols x cols): each group's grid from its
    range in ``W`` (static groups), then the columns one by one, in descending order of ``H``'s diagonal
    (``actorder``; else in order), each rounded on its group's grid and its error spread over the columns
    after it by the inverse Cholesky factor of the damped ``H``; lazy block updates of ``block`` columns.
    The choices of the maintained implementations (llm-compressor's defaults)."""
    return gptq_widths(W, H, (bits,), group, damp, block, actorder)[0]


def gptq_widths(W: torch.Tensor, H: torch.Tensor, widths: Sequence[int], group: int | None = None,
                damp: float = 0.01, block: int = 128, actorder: bool = True) -> list[Quantized]:
    """:func:`gptq` at each of ``widths`` (one pass: the columns' loop and the factor of ``H`` are shared; the
    widths keep their own grids and errors)."""
    W = W.detach().to(torch.float64)
    H = H.detach().to(device=W.device, dtype=torch.float64).clone()
    rows, cols = W.shape
    specs = [QuantSpec(b, group or group_size(cols, b)) for b in widths]
    dead = torch.diag(H) <= 0
    H[dead, dead] = 1.0
    W = W.clone()
    W[:, dead] = 0.0
    grids = [_grid(W, sp) for sp in specs]  # static groups: every grid from the weights as given
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)
    perm = torch.argsort(torch.diag(H), descending=True) if actorder else torch.arange(cols, device=W.device)
    U = _inverse_cholesky(H[perm][:, perm])
    diag = torch.diagonal(U).clone()
    # per column (in the order of quantization): each width's scale, zero point and code range
    S = torch.stack([s.to(W.dtype).repeat_interleave(sp.group, dim=1)[:, perm] for (s, _), sp in zip(grids, specs)])
    Z = torch.stack([torch.zeros_like(W) if z is None else z.to(W.dtype).repeat_interleave(sp.group, dim=1)[:, perm]
                     for (_, z), sp in zip(grids, specs)])
    lo = torch.tensor([-127.0 if sp.symmetric else 0.0 for sp in specs], dtype=W.dtype, device=W.device)[:, None]
    hi = torch.tensor([127.0 if sp.symmetric else 2.0**sp.bits - 1 for sp in specs], dtype=W.dtype,
                      device=W.device)[:, None]
    Ws = W[:, perm].unsqueeze(0).repeat(len(specs), 1, 1)  # one copy per width: B x rows x cols
    codes = torch.zeros(len(specs), rows, cols, dtype=torch.int16, device=W.device)
    for b0 in range(0, cols, block):
        b1 = min(cols, b0 + block)
        Wb = Ws[:, :, b0:b1].clone()
        Eb = torch.zeros_like(Wb)
        with _one_thread():  # column by column the ops are small: threads only add their synchronisation
            _columns(Wb, Eb, U, diag, codes, S, Z, lo, hi, b0, b1)
        Ws[:, :, b1:] -= Eb @ U[b0:b1, b1:]
    out = torch.empty_like(codes)
    out[:, :, perm] = codes
    return [Quantized(out[k], s, z, sp) for k, ((s, z), sp) in enumerate(zip(grids, specs))]


@contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _columns(Wb: torch.Tensor, Eb: torch.Tensor, U: torch.Tensor, diag: torch.Tensor, codes: torch.Tensor,
             S: torch.Tensor, Z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, b0: int, b1: int) -> None:
    """GPTQ's inner loop over the columns b0..b1 of one block (every width at once), in place."""
    for j in range(b1 - b0):
        col = b0 + j
        w = Wb[:, :, j]
        s, z = S[:, :, col], Z[:, :, col]
        q = torch.minimum(torch.maximum(torch.round(w / s) + z, lo), hi)
        codes[:, :, col] = q.to(torch.int16)
        err = (w - (q - z) * s) / diag[col]
        Wb[:, :, j + 1:] -= err[:, :, None] * U[col, col + 1:b1]
        Eb[:, :, j] = err


def _inverse_cholesky(H: torch.Tensor) -> torch.Tensor:
    """The upper Cholesky factor R of ``H^-1`` (``H^-1 = R^T R``, GPTQ's), from one Cholesky factor: with J the
    reversal, ``J H J = L L^T`` gives ``R = J L^-1 J``. More damping if ``H`` is numerically singular."""
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    flipped = H.flip(0).flip(1)
    extra = 0.0
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(flipped + extra * eye)
        if int(info) == 0:
            Linv = torch.linalg.solve_triangular(L, eye, upper=False)
            return Linv.flip(0).flip(1)
        extra = max(1e-12, 10 * extra or 1e-6 * float(torch.mean(torch.diag(H))))
    raise ValueError("GPTQ: the input covariance stays singular after damping")


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (int16; 0 .. 2^bits - 1 below 8 bits, -127..127 at 8) packed into uint8 (int8 at 8 bits): 8 bits one
    a byte, 4 bits two, 3 bits eight in three bytes, 2 bits four (the last row padded to whole bytes)."""
    if bits == 8:
        return codes.to(torch.int8)
    flat = codes.reshape(-1).to(torch.int64)
    per = 8 if bits == 3 else 8 // bits
    pad = (-flat.numel()) % per
    flat = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, per)
    shifts = torch.arange(per, device=flat.device) * bits
    words = (flat << shifts).sum(1)  # per values in per * bits bits (<= 24)
    nbytes = per * bits // 8
    out = torch.stack([(words >> (8 * k)) & 0xFF for k in range(nbytes)], dim=1)
    return out.reshape(-1).to(torch.uint8)


def unpack(packed: torch.Tensor, bits: int, shape: tuple[int, int]) -> torch.Tensor:
    """The int16 codes of :func:`pack`, in ``shape``."""
    if bits == 8:
        return packed.to(torch.int16).reshape(shape)
    per = 8 if bits == 3 else 8 // bits
    nbytes = per * bits // 8
    b = packed.to(torch.int64).reshape(-1, nbytes)
    words = (b << (8 * torch.arange(nbytes, device=b.device))).sum(1)
    vals = (words[:, None] >> (torch.arange(per, device=b.device) * bits)) & (2**bits - 1)
    n = shape[0] * shape[1]
    return vals.reshape(-1)[:n].reshape(shape).to(torch.int16)


_EXACT = [False]


@contextmanager
def exact_products() -> Iterator[None]:
    """Within the block every :class:`QuantLinear` multiplies by its dequantized weight in the input's own dtype
    (what a quality measurement compares with other quantizers), not on the bfloat16 kernels."""
    before = _EXACT[0]
    _EXACT[0] = True
    try:
        yield
    finally:
        _EXACT[0] = before


def _cpu_int8_ok(cols: int) -> bool:
    """Whether torch's CPU int8 kernel takes ``cols`` inputs: it reads them in blocks (torch 2.13 on an AVX-512
    CPU crashes on 8, 24, 40, 56 or 100 inputs and runs 16, 48, 80); a multiple of 64 is taken, anything else
    (a low-rank factor's rank) dequantizes instead."""
    return cols % 64 == 0


def _cpu_int4_ok(rows: int, cols: int, group: int) -> bool:
    """Whether torch's CPU int4 weight-only kernel takes this shape (rows a multiple of 16; groups it knows)."""
    return rows % 16 == 0 and group in (32, 64, 128, 256) and cols % group == 0


class QuantLinear(nn.Module):
    """``y = x W^T + b`` with W stored in ``bits`` (:data:`BITS`): packed codes (``codes``), float16 ``scales``
    and, below 8 bits, ``zeros``; nothing dense is kept.

    On the CPU the product runs on torch's weight-only kernels, in bfloat16 (the output comes back in the input's
    dtype): int8 (``_weight_int8pack_mm``, the codes as they are stored) and int4 (``_weight_int4pack_mm_for_cpu``;
    3- and 2-bit codes run in its 4-bit container). The kernel's own layout is made at the first product and
    replaces the stored codes (the state dict gives them back in the stored format). Elsewhere (a GPU, a shape
    the kernels do not take, or inside :func:`exact_products`) each product dequantizes this one layer's weight
    in the input's dtype and drops it after."""

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bits: int, group: int, bias: nn.Parameter | None,
                 device: Any = None) -> None:
        super().__init__()
        if bits not in BITS or bits == 16:
            raise ValueError(f"a quantized layer stores 8, 4, 3 or 2 bits, got {bits!r}")
        self.in_features, self.out_features, self.bits, self.group = in_features, out_features, bits, group
        n = out_features * in_features
        shape: tuple[int, ...] = (out_features, in_features) if bits == 8 else (packed_bytes(n, bits),)
        self.register_buffer("codes", torch.zeros(shape, dtype=torch.int8 if bits == 8 else torch.uint8,
                                                  device=device))
        groups = in_features // group
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.float16, device=device))
        if bits < 8:
            self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.float16, device=device))
        else:
            self.zeros = None
        self.bias = bias
        self._kernel: tuple[torch.Tensor, torch.Tensor, torch.dtype] | None = None  # (int4 layout, scales+zeros)
        self.register_state_dict_post_hook(_stored_codes)

    @classmethod
    def from_quantized(cls, q: Quantized, bias: nn.Parameter | None, device: Any = None) -> QuantLinear:
        """The layer of a :class:`Quantized` matrix (d_out x d_in) and a bias."""
        rows, cols = q.codes.shape
        layer = cls(cols, rows, q.spec.bits, q.spec.group, bias, device=device)
        with torch.no_grad():
            layer.codes.copy_(pack(q.codes, q.spec.bits).reshape(layer.codes.shape))
            layer.scales.copy_(q.scales)
            if q.zeros is not None and layer.zeros is not None:
                layer.zeros.copy_(q.zeros)
        return layer

    def quantized(self) -> Quantized:
        """The stored matrix as codes, scales and zero points."""
        codes = unpack(self._stored(), self.bits, (self.out_features, self.in_features))
        return Quantized(codes, self.scales, self.zeros, QuantSpec(self.bits, self.group))

    @property
    def weight(self) -> torch.Tensor:
        """The weight the codes stand for (a dense copy, in float32)."""
        return self.quantized().dequantize(torch.float32)

    def stored_bytes(self) -> int:
        """Bytes this layer's weight takes as stored (codes, scales, zero points)."""
        return stored_bytes(self.out_features, self.in_features, self.bits, self.group)

    def _stored(self) -> torch.Tensor:
        if self._kernel is not None and self.codes.numel() == 0:
            return _from_int4_kernel(self)
        return self.codes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.device.type == "cpu" and not _EXACT[0]:
            # torch's CPU weight-only kernels are fast in bfloat16 only (float32 takes a reference path 20x
            # slower): the activations go through bfloat16, the output comes back in their own dtype
            xb = x2.to(torch.bfloat16).contiguous()  # the kernels read rows as they lie in memory
            if self.bits == 8 and _cpu_int8_ok(self.in_features):
                if self.codes.data_ptr() % 64:  # the kernel reads aligned rows (safetensors may give any offset)
                    self.codes = self.codes.clone()
                y = torch.ops.aten._weight_int8pack_mm(xb, self.codes, self.scales.reshape(-1).to(torch.bfloat16))
            elif self.bits < 8 and _cpu_int4_ok(self.out_features, self.in_features, self.group):
                packed, sz, _ = self._int4(torch.bfloat16)
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, packed, self.group, sz)
            else:
                y = xb @ self.weight.to(torch.bfloat16).T
            y = y.to(x2.dtype)
        else:
            y = x2 @ self.quantized().dequantize(x2.dtype).to(x2.device).T
        y = y.reshape(*shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def _int4(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        """The int4 kernel's layout (made once: it replaces the stored codes) and its scales and zeros."""
        if self._kernel is None or self._kernel[2] != dtype:
            if self._kernel is None:
                codes = unpack(self.codes, self.bits, (self.out_features, self.in_features)).to(torch.int32)
                packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
                self.codes = torch.zeros(0, dtype=torch.uint8, device=self.codes.device)  # the layout replaces it
            else:
                packed = self._kernel[0]
            s = self.scales.to(torch.float32)
            z = self.zeros.to(torch.float32) if self.zeros is not None else torch.zeros_like(s)
            # the kernel computes (q - 8) s + zero: zero = (8 - z) s gives (q - z) s
            sz = torch.stack([s.T, ((8.0 - z) * s).T], dim=-1).contiguous().to(dtype)
            self._kernel = (packed, sz, dtype)
        return self._kernel

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group={self.group}")


def _from_int4_kernel(layer: QuantLinear) -> torch.Tensor:
    """The stored (packed) codes of a layer whose codes live in the int4 kernel's layout: the kernel applied to
    the identity with unit scales reads them back exactly."""
    assert layer._kernel is not None
    packed = layer._kernel[0]
    k, n = layer.in_features, layer.out_features
    ones = torch.ones(k // layer.group, n, 2, dtype=torch.float32, device=packed.device)
    ones[..., 1] = 8.0  # (q - 8) * 1 + 8 = q
    eye = torch.eye(k, dtype=torch.float32, device=packed.device)
    codes = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, packed, layer.group, ones)
    return pack(codes.T.round().to(torch.int16), layer.bits)


def _stored_codes(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:  # noqa: D401
    """State-dict hook: the codes in their stored format, also where the kernel's layout replaced them."""
    if isinstance(module, QuantLinear) and module.codes.numel() == 0 and module._kernel is not None:
        state[prefix + "codes"] = _from_int4_kernel(module)
