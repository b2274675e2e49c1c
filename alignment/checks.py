"""Input rules shared by the samplers, the command line and the studio: one function per rule, its limits as
arguments, each failure a ``ValueError`` whose message names the input and what it must be.

    check_seed(seed)                       # a whole number in 0 .. 2**63 - 1 (what torch's generators take)
    check_seed(seed, limit=2**31)          # the studio's, whose vote store keeps seeds in a 32-bit column
    check_range(beta, "β", 1e-3, 1e3)
    check_beta(beta)                       # the reward temperature: any positive finite number
    whole_number(particles, "particles", 1, 16)

A whole number may come as an ``int``, a NumPy integer, or (from a web page or a JSON call) a float or text that
holds one: ``3``, ``3.0`` and ``"3"`` are 3; ``3.5``, ``True``, ``None`` and NaN are refused.
"""

from __future__ import annotations

import math
import numbers

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a signed 64-bit seed


def number(value, name: str) -> float:
    """``value`` as a finite float."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r:.40}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return x


def check_range(value, name: str, low: float, high: float, why: str = "") -> float:
    """``value`` as a float in [low, high]; ``why`` is added to the message (e.g. where the range comes from)."""
    x = number(value, name)
    if not low <= x <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}{why}, not {x:g}")
    return x


def whole_number(value, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high] (integers are taken exactly, however large)."""
    refused = ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r:.40}")
    if isinstance(value, bool):
        raise refused
    if isinstance(value, numbers.Integral):
        whole = int(value)
    else:
        try:
            x = number(value, name)
        except ValueError:
            raise refused from None
        if not x.is_integer():
            raise refused
        whole = int(x)
    if not low <= whole <= high:
        raise refused
    return whole


def check_seed(seed, limit: int = SEED_LIMIT) -> int:
    """A seed: a whole number in ``0 .. limit - 1``."""
    return whole_number(seed, "the seed", 0, limit - 1)


def check_beta(beta) -> float:
    """β, the reward temperature of ``p* ∝ p · exp(r/β)``, as a positive finite float (both samplers' rule)."""
    name = "beta (β, the reward temperature)"
    x = number(beta, name)
    if x <= 0:
        raise ValueError(f"{name} must be a positive number (smaller = stronger alignment), not {x:g}")
    return x
