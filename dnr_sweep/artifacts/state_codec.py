"""Compact, exact encoding of training state for checkpoints.

A DNR checkpoint is mostly zeros and ones: masks are 0/1 tensors, the masked weights are exactly
zero where the mask is off (at 5% density, 95% of every convolution). Stored as plain float32
tensors, a ResNet18/CIFAR-100 state takes 224 MB; :func:`encode` shrinks each floating-point tensor
of a state (nested dicts/lists/tuples, as ``torch.save`` takes them) to one of three forms:

- ``binary``: every element is ``+0.0`` or ``1.0`` (a mask): one bit per element;
- ``sparse``: mostly zeros (a masked weight, ``z``): the nonzero values, a bitmap of their positions
  and a bitmap of the zeros that are ``-0.0`` (``w * 0`` is ``-0.0`` for a negative ``w``; keeping
  the sign makes the round trip bit-exact, not just ``==``);
- the plain tensor otherwise (momentum, BatchNorm, small tensors).

:func:`decode` restores every tensor bit for bit (checked by the tests on random and real states),
so a resumed run continues exactly as if it had never stopped. Encoded tensors are plain dicts of
tensors and strings, so checkpoints still load with ``torch.load(..., weights_only=True)``; a state
that was never encoded passes through :func:`decode` unchanged. Bitmaps are packed with
``numpy.packbits``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: the key that marks an encoded tensor (never a key of a state dict PyTorch writes)
TAG = "__dnr_packed__"
#: tensors smaller than this stay plain: encoding them saves nothing worth the bookkeeping
MIN_NUMEL = 4096
#: a tensor is stored sparse only when that is smaller than this fraction of its plain size
SPARSE_GAIN = 0.9

_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _pack(bits: Tensor) -> Tensor:
    return torch.from_numpy(np.packbits(bits.reshape(-1).cpu().numpy()))


def _unpack(packed: Tensor, count: int) -> Tensor:
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).astype(bool))


def _raw_bits(flat: Tensor) -> Tensor:
    """The tensor's bit patterns as integers (so ``-0.0`` and ``+0.0``, or two NaNs, differ)."""
    return flat.view(_SAME_SIZE_INT[flat.element_size()])


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are identical bit for bit (dtype, shape and every bit of every element)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(_raw_bits(a.detach().contiguous().reshape(-1)), _raw_bits(b.detach().contiguous().reshape(-1)))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def encode_tensor(tensor: Tensor) -> Tensor | dict[str, Any]:
    """``tensor`` in its smallest exact form (see the module docstring); on the CPU."""
    if not tensor.is_floating_point() or tensor.numel() < MIN_NUMEL or tensor.element_size() not in _SAME_SIZE_INT:
        return tensor
    flat = tensor.detach().contiguous().reshape(-1).cpu()
    n, width = flat.numel(), flat.element_size() * 8
    head = {TAG: "", "shape": list(tensor.shape), "dtype": _dtype_name(tensor.dtype)}
    nonzero_count = int(torch.count_nonzero(flat))  # NaN and inf count as nonzero
    if nonzero_count == n:  # no zero at all: an all-ones mask, or a plain dense tensor
        return {**head, TAG: "binary", "ones": _pack(flat == 1)} if bool((flat == 1).all()) else tensor
    if nonzero_count * width + 2 * n > SPARSE_GAIN * n * width:
        return tensor  # mostly nonzero (momentum, most BatchNorm tensors): as it is
    raw = _raw_bits(flat)
    negative_zero = raw == torch.iinfo(raw.dtype).min  # the sign bit alone: -0.0
    has_negative_zero = bool(negative_zero.any())
    nonzero = flat != 0
    values = flat[nonzero]
    if not has_negative_zero and bool((values == 1).all()):
        return {**head, TAG: "binary", "ones": _pack(nonzero)}  # only +0.0 and 1.0: a mask
    return {
        **head, TAG: "sparse", "nonzero": _pack(nonzero), "values": values,
        "negative_zero": _pack(negative_zero) if has_negative_zero else None,
    }  # fmt: skip


def decode_tensor(packed: dict[str, Any]) -> Tensor:
    """The tensor :func:`encode_tensor` encoded, bit for bit (on the CPU)."""
    kind, shape = packed[TAG], tuple(packed["shape"])
    dtype = getattr(torch, packed["dtype"])
    count = 1
    for size in shape:
        count *= size
    if kind == "binary":
        return _unpack(packed["ones"], count).to(dtype).reshape(shape)
    if kind == "sparse":
        flat = torch.zeros(count, dtype=dtype)
        if packed["negative_zero"] is not None:
            flat[_unpack(packed["negative_zero"], count)] = -0.0
        flat[_unpack(packed["nonzero"], count)] = packed["values"].to(dtype)
        return flat.reshape(shape)
    raise ValueError(
        f"unknown packed tensor kind {kind!r}; valid: binary, sparse (a checkpoint from a newer dnr-sweep?)"
    )


def encode(state: Any) -> Any:
    """``state`` with every floating-point tensor in its smallest exact form (containers kept)."""
    if isinstance(state, Tensor):
        return encode_tensor(state)
    if isinstance(state, dict):
        return {key: encode(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(encode(value) for value in state)
    return state


def decode(state: Any) -> Any:
    """Undo :func:`encode`; anything not encoded is returned as it is."""
    if isinstance(state, dict):
        if TAG in state:
            return decode_tensor(state)
        return {key: decode(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(decode(value) for value in state)
    return state
