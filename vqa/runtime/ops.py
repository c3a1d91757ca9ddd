"""The numpy layers of the inference runtime, each the eval-mode twin of a torch module.

Activations are float32 arrays; layouts are the torch modules' unless a function says
otherwise (convolutions here work on channels-last (B, H, W, C) maps, so that each one is a
single matrix product). The tests compare every model built from these against torch.
"""
from __future__ import annotations

import numpy as np

# attention variants whose eval forward is plain grouped-query attention (what `attention` runs);
# the key-driven (kdgqa, dgqa), routed (mixsga) and latent (mla) variants stay on torch
FIXED_GROUPS = ("mha", "mqa", "gqa", "sqa", "ssqa", "xsqa", "pgqa")

_ERF_P = np.float32(0.3275911)
_ERF_A = [np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]
# GELU's large-array form: erf(|x| / sqrt 2) with p / sqrt 2 folded in, the coefficients halved
_ERF_P_HALF = np.float32(0.3275911 * 0.7071067811865476)
_HALF_ERF_A = [np.float32(0.5) * a for a in _ERF_A]  # exact: a power-of-two scale


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26: absolute error < 1.5e-7, plus float32 rounding)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1 / (1 + _ERF_P * a)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    return s * (1 - poly * np.exp(-a * a))


_PHI_GRID = np.linspace(-10.0, 10.0, 20001)                # step 1e-3
_PHI_TABLE = None  # the normal CDF on the grid, built on first use
_SMALL = 512  # np.interp binary-searches: faster than the polynomial below ~600 values


def _phi_table() -> np.ndarray:
    global _PHI_TABLE
    if _PHI_TABLE is None:
        import math

        _PHI_TABLE = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in _PHI_GRID.tolist()])
    return _PHI_TABLE


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU of `torch.nn.GELU()`: x * Phi(x).

    Small arrays (decoding steps): Phi by linear interpolation on a 1e-3 grid over [-10, 10]
    (error < 4e-8; beyond the grid Phi is 0 or 1 to float precision): one numpy call.
    Large arrays: with q = (1 - erf(|x|/sqrt 2)) / 2 (erf as in `erf`, absolute error < 1.5e-7),
    Phi(x) = 1 - q for x >= 0 and q for x < 0, so gelu(x) = max(x, 0) - |x| q: 20 passes over
    the array, the constants folded in (measured 25 % faster than the form with a select)."""
    if x.size <= _SMALL:
        return x * np.interp(x, _PHI_GRID, _phi_table()).astype(np.float32)
    a = np.abs(x)
    t = a * _ERF_P_HALF
    t += 1
    np.reciprocal(t, out=t)
    q = t * _HALF_ERF_A[4]
    for c in (_HALF_ERF_A[3], _HALF_ERF_A[2], _HALF_ERF_A[1], _HALF_ERF_A[0]):
        q += c
        q *= t
    e = np.square(x)
    e *= np.float32(-0.5)
    np.exp(e, out=e)
    q *= e
    q *= a
    out = np.maximum(x, np.float32(0))
    out -= q
    return out


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x (..., in) with torch's weight layout w (out, in) -> (..., out)."""
    y = x @ w.T
    return y if b is None else y + b


class Linear:
    """A `torch.nn.Linear` from its weight (out, in) and bias, stored transposed and contiguous
    (faster for the one-row products of decoding)."""

    def __init__(self, w: np.ndarray, b: np.ndarray | None = None):
        self.wt = np.ascontiguousarray(w.T, dtype=np.float32)
        self.b = None if b is None else np.asarray(b, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.wt
        if self.b is not None:
            y += self.b
        return y


class LayerNorm:
    def __init__(self, w: np.ndarray, b: np.ndarray, eps: float):
        self.w, self.b = w.astype(np.float32), b.astype(np.float32)
        self.eps, self.inv_d = np.float32(eps), np.float32(1 / w.shape[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xc = x - np.add.reduce(x, -1, keepdims=True) * self.inv_d
        var = np.add.reduce(xc * xc, -1, keepdims=True) * self.inv_d
        xc /= np.sqrt(var + self.eps)
        xc *= self.w
        xc += self.b
        return xc


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    return LayerNorm(w, b, eps)(x)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Grouped-query attention. q (B, Hq, N, d), k, v (B, Hkv, M, d) with Hq a multiple of
    Hkv (query head h reads K/V head h // (Hq / Hkv), as `enable_gqa=True`); mask bool
    broadcastable to (B, Hq, N, M), True = attend -> (B, Hq, N, d)."""
    B, hq, N, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    qg = q.reshape(B, hkv, g * N, d)                                  # the group's queries share K/V
    s = (qg @ k.transpose(0, 1, 3, 2)) * np.float32(d ** -0.5)       # (B, Hkv, g*N, M)
    s = s.reshape(B, hq, N, -1)
    if mask is not None:
        s = np.where(mask, s, np.float32(-np.inf))
    p = softmax(s).reshape(B, hkv, g * N, -1)
    return (p @ v).reshape(B, hq, N, d)


def fold_batch_norm(w: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                    var: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free conv weight (Cout, ...) followed by eval-mode BatchNorm -> (weight, bias)."""
    scale = gamma / np.sqrt(var + eps)
    return (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32), (beta - mean * scale).astype(np.float32)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Channels-last convolution: x (B, H, W, Cin), torch weight (Cout, Cin, kh, kw) -> (B, Ho, Wo, Cout).
    im2col as one strided view copied once by the matmul's reshape, channels innermost."""
    cout, cin, kh, kw = w.shape
    if padding:  # into a zero buffer (np.pad is several times slower)
        B, H, W, _ = x.shape
        xp = np.zeros((B, H + 2 * padding, W + 2 * padding, cin), x.dtype)
        xp[:, padding:padding + H, padding:padding + W] = x
        x = xp
    B, H, W, _ = x.shape
    Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
    if kh == kw == 1 and stride == 1:
        cols = x
    else:  # (B, Ho, Wo, kh, kw, Cin): a view of x
        sb, sh, sw, sc = x.strides
        cols = np.lib.stride_tricks.as_strided(x, (B, Ho, Wo, kh, kw, cin),
                                               (sb, sh * stride, sw * stride, sh, sw, sc), writeable=False)
    y = cols.reshape(B * Ho * Wo, kh * kw * cin) @ w.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)
    if b is not None:
        y += b
    return y.reshape(B, Ho, Wo, cout)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """The four cubic-convolution weights (torch's bicubic, A = -0.75) for fractions t (n,) -> (n, 4)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):   # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D bicubic resampling as `F.interpolate(mode="bicubic",
    align_corners=False)` (edge samples clamped)."""
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    i0 = np.floor(src).astype(np.int64)
    wts = _cubic_weights(src - i0)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for k in range(4):
        idx = np.clip(i0 - 1 + k, 0, n_in - 1)
        np.add.at(m, (np.arange(n_out), idx), wts[:, k])
    return m
