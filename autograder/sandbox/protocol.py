"""The wire format between the grader and its worker: plain data only, never pickle.

Both sides exchange one JSON document per message (length-prefixed, see :func:`write_msg`).
Values are JSON scalars, lists and string-keyed dicts, plus tagged objects:

* ``{"__t": "tensor", "dtype": "float32", "shape": [2, 3], "data": <base64>, "rg": false}``
* ``{"__t": "ndarray", "dtype": "float64", "shape": [...], "data": <base64>}``
* ``{"__t": "tuple", "items": [...]}``, ``{"__t": "float", "v": "nan" | "inf" | "-inf"}``
* ``{"__t": "bytes", ...}`` is not supported on purpose.
* ``{"__t": "rejected", "type": "MyTensor", "why": "..."}``: the worker met a value that is not
  plain data (a tensor subclass, an object with its own ``__eq__``, ...) and refused to send it.
* grader -> worker only: ``{"__t": "fixture", ...}`` and ``{"__t": "handle", "id": n}`` name
  objects that live in the worker (an encoder, a model, a stateful module).

Decoding builds tensors and arrays from raw bytes with a dtype from a fixed allow-list, so
nothing the worker sends can run code in the grader.  This module imports only the standard
library, numpy and torch: the worker loads it by file path, without importing ``autograder``.
"""
from __future__ import annotations

import base64
import json
import math
import re
import struct

import numpy as np
import torch

MAX_MESSAGE = 256 * 1024 * 1024  # bytes; a bigger request is refused by the worker
#: What the grader accepts from a worker.  The worker's code is the student's: a reply may be forged
#: (written on the reply descriptor, or produced by rebound helpers), so it is read within these bounds
#: before anything is built from it, and every field is checked (``autograder/sandbox/host.py``).
MAX_REPLY = 64 * 1024 * 1024    # bytes of one reply (the largest honest reply is a few MB)
MAX_REPLY_DEPTH = 48            # JSON nesting (encode refuses values nested more than 30 deep)
MAX_REPLY_NODES = 1_000_000     # JSON containers and items (encode refuses values of more than 200000)
MAX_DIMS = 16                   # dimensions of a tensor or array

TORCH_DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "bool": torch.bool, "complex64": torch.complex64, "complex128": torch.complex128,
}
TORCH_NAMES = {v: k for k, v in TORCH_DTYPES.items()}
NUMPY_DTYPES = {"float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "uint16",
                "uint32", "uint64", "bool", "complex64", "complex128"}
_PLAIN_LEAVES = (bool, int, float, str, type(None))


class NotPlainData(TypeError):
    """A value that the protocol refuses to carry."""


# ----------------------------------------------------------------------------- encoding
def encode(value, depth: int = 0, budget: list | None = None):
    """Turn ``value`` into JSON-able data.  Refuses (tags as ``rejected``) anything not plain.

    Only the exact built-in types are accepted: a subclass of ``int``, ``list``, ``torch.Tensor``
    ... could carry its own ``__eq__``, so it is converted to its base type's *data* (numbers via
    the base type's own conversion) or rejected, never passed on as an object.
    """
    if budget is None:
        budget = [200_000]  # number of nodes: a deeply nested or huge list is refused
    budget[0] -= 1
    if budget[0] < 0:
        raise NotPlainData("value too large (more than 200000 items)")
    if depth > 30:
        raise NotPlainData("value nested more than 30 levels deep")
    t = type(value)
    if t is bool or t is str or value is None:
        return value
    if t is int:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        return {"__t": "float", "v": repr(value)}
    if t is torch.Tensor or t is torch.nn.Parameter:
        return _encode_tensor(value)
    if t is np.ndarray:
        return _encode_ndarray(value)
    if isinstance(value, np.generic) and t.__module__ == "numpy":
        return {"__t": "npscalar", "dtype": str(value.dtype), "v": encode(value.item(), depth + 1, budget)} \
            if value.dtype.name in NUMPY_DTYPES else _rejected(value, "numpy scalar of an unsupported dtype")
    if t is list:
        return [encode(v, depth + 1, budget) for v in value]
    if t is tuple:
        return {"__t": "tuple", "items": [encode(v, depth + 1, budget) for v in value]}
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                return _rejected(value, "a dict with a non-str key")
            if k == "__t":
                return _rejected(value, "a dict with the reserved key '__t'")
            out[k] = encode(v, depth + 1, budget)
        return out
    return _rejected(value, _why(value))


def _why(value) -> str:
    t = type(value)
    if isinstance(value, torch.Tensor):
        return f"a subclass of torch.Tensor ({t.__name__}); return a plain torch.Tensor"
    if isinstance(value, np.ndarray):
        return f"a subclass of numpy.ndarray ({t.__name__}); return a plain array"
    for base in (bool, int, float, str, list, tuple, dict):
        if isinstance(value, base):
            return f"a subclass of {base.__name__} ({t.__name__}); return a plain {base.__name__}"
    return f"a {t.__module__}.{t.__qualname__} object, which is not plain data"


def _rejected(value, why: str) -> dict:
    t = type(value)
    try:
        name = f"{t.__module__}.{t.__qualname__}" if t.__module__ not in ("builtins",) else t.__qualname__
    except Exception:  # noqa: BLE001 - a hostile class may break even this
        name = "<unknown>"
    return {"__t": "rejected", "type": str(name)[:200], "why": str(why)[:500]}


def _encode_tensor(x: torch.Tensor) -> dict:
    # torch.Tensor methods called on the exact class: no __torch_function__ of a subclass runs.
    if x.layout != torch.strided:
        return _rejected(x, f"a {x.layout} tensor; return a dense (strided) tensor")
    if x.dtype not in TORCH_NAMES:
        return _rejected(x, f"a tensor of dtype {x.dtype}, which the grader does not accept")
    rg = bool(x.requires_grad)
    y = x.detach().cpu().contiguous()
    if y.dtype == torch.bfloat16:
        raw = y.view(torch.int16).numpy().tobytes()
    else:
        raw = y.resolve_conj().resolve_neg().numpy().tobytes()
    return {"__t": "tensor", "dtype": TORCH_NAMES[y.dtype], "shape": list(y.shape),
            "data": base64.b64encode(raw).decode("ascii"), "rg": rg}


def _encode_ndarray(a: np.ndarray) -> dict:
    if a.dtype.name not in NUMPY_DTYPES:
        return _rejected(a, f"an array of dtype {a.dtype}, which the grader does not accept")
    a = np.ascontiguousarray(a)
    return {"__t": "ndarray", "dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}


# ----------------------------------------------------------------------------- decoding
class Rejected:
    """What the worker refused to send: shown to the student, equal to nothing."""

    __slots__ = ("type_name", "why")

    def __init__(self, type_name: str, why: str):
        self.type_name, self.why = type_name, why

    def __repr__(self) -> str:
        return f"<rejected {self.type_name}: {self.why}>"

    def __eq__(self, other):  # a rejected value never matches anything
        return False

    __hash__ = None


class BadReply(ValueError):
    """A message that is not what :func:`encode` produces (forged, truncated or too big)."""


def _shape(data) -> list[int]:
    shape = data.get("shape")
    if type(shape) is not list or len(shape) > MAX_DIMS or any(type(s) is not int or s < 0 for s in shape):
        raise BadReply(f"bad shape {str(shape)[:80]}")
    return shape


def _raw(data) -> bytes:
    if type(data.get("data")) is not str:
        raise BadReply("tensor data is not a string")
    try:
        return base64.b64decode(data["data"], validate=True)
    except (ValueError, TypeError) as e:
        raise BadReply(f"tensor data is not base64 ({e})") from None


def decode(data, depth: int = 0):
    """Inverse of :func:`encode`; builds only tensors, arrays, numbers, str, lists, tuples, dicts.

    Anything else (an unknown tag, a dtype off the allow-list, data that does not match its shape,
    nesting deeper than 40) raises :class:`BadReply` (a ``ValueError``), never another exception."""
    if depth > 40:
        raise BadReply("message nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise BadReply(f"unexpected JSON value {type(data).__name__}")
    tag = data.get("__t")
    if tag is None:
        return {str(k): decode(v, depth + 1) for k, v in data.items()}
    if tag == "tensor":
        dtype = TORCH_DTYPES.get(data.get("dtype")) if isinstance(data.get("dtype"), str) else None
        if dtype is None:
            raise BadReply(f"tensor dtype {str(data.get('dtype'))[:40]!r} not allowed")
        shape, raw = _shape(data), _raw(data)
        if dtype == torch.bfloat16:
            np_dtype = np.dtype(np.int16)
        else:
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        if len(raw) != math.prod(shape) * np_dtype.itemsize:
            raise BadReply("tensor data does not match its shape")
        arr = np.frombuffer(raw, dtype=np_dtype).copy()
        t = torch.from_numpy(arr)
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        t = t.reshape(shape)
        if data.get("rg") is True and t.is_floating_point():
            t.requires_grad_(True)  # grader side: only to report it; graders compare detached values
        return t
    if tag == "ndarray":
        if data.get("dtype") not in NUMPY_DTYPES:
            raise BadReply(f"dtype {str(data.get('dtype'))[:40]!r} not allowed")
        shape, raw = _shape(data), _raw(data)
        dt = np.dtype(data["dtype"])
        if len(raw) != math.prod(shape) * dt.itemsize:
            raise BadReply("array data does not match its shape")
        return np.frombuffer(raw, dtype=dt).copy().reshape(shape)
    if tag == "npscalar":
        if data.get("dtype") not in NUMPY_DTYPES:
            raise BadReply(f"dtype {str(data.get('dtype'))[:40]!r} not allowed")
        v = decode(data.get("v"), depth + 1)
        if type(v) not in (bool, int, float, complex):
            raise BadReply("a numpy scalar that is not a number")
        try:
            return np.dtype(data["dtype"]).type(v)
        except (OverflowError, TypeError, ValueError) as e:
            raise BadReply(f"bad numpy scalar ({e})") from None
    if tag == "tuple":
        if type(data.get("items")) is not list:
            raise BadReply("a tuple without items")
        return tuple(decode(v, depth + 1) for v in data["items"])
    if tag == "float":
        v = data.get("v")
        if v not in ("nan", "inf", "-inf"):
            raise BadReply(f"bad float {str(v)[:40]!r}")
        return float(v)
    if tag == "rejected":
        return Rejected(str(data.get("type", "?"))[:200], str(data.get("why", ""))[:500])
    if tag in ("fixture", "handle"):
        return data  # only meaningful in the worker; the worker resolves them itself
    raise BadReply(f"unknown tag {str(tag)[:40]!r}")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_OPEN, _CLOSE = ord("["), ord("]")


def loads_reply(body: bytes, max_depth: int = MAX_REPLY_DEPTH, max_nodes: int = MAX_REPLY_NODES):
    """``json.loads`` of a worker's reply, within a memory and a depth bound.

    Before parsing, the structure is measured on the bytes themselves (string contents removed):
    more than ``max_nodes`` containers and items, or nesting deeper than ``max_depth``, is a
    :class:`BadReply`; so ``[{},{},...]`` (millions of dicts) or ``[[[[...]]]]`` 100,000 deep
    costs the grader the reply's bytes, never a RecursionError or gigabytes of Python objects."""
    if len(body) > MAX_REPLY:
        raise BadReply(f"a reply of {len(body)} bytes (more than {MAX_REPLY})")
    bare = _STRING.sub(b'""', body)
    nodes = bare.count(b",") + bare.count(b"[") + bare.count(b"{")
    if nodes > max_nodes:
        raise BadReply(f"a reply of more than {max_nodes} items")
    brackets = np.frombuffer(bare.translate(_BRACKETS, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size:
        depth = np.cumsum(np.where(brackets == _OPEN, 1, -1), dtype=np.int64)
        if int(depth.max()) > max_depth:
            raise BadReply(f"a reply nested more than {max_depth} levels deep")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadReply(f"not JSON ({str(e)[:100]})") from None


# "{" and "[" become "[", "}" and "]" become "]"; everything else is deleted
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


# ----------------------------------------------------------------------------- framing
def pack(obj) -> bytes:
    """One message: 8-byte big-endian length, then UTF-8 JSON."""
    body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return struct.pack(">Q", len(body)) + body


def unpack_header(header: bytes, limit: int = MAX_MESSAGE) -> int:
    (n,) = struct.unpack(">Q", header)
    if n > limit:
        raise BadReply(f"a message of {n} bytes (more than {limit})")
    return n
