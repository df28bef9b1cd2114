"""Argument checks shared by the OT solvers.

Every public solver validates its inputs here so that the error messages are
uniform: a message always names the offending argument and, for shape errors,
the shapes involved.
"""
import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import torch

Rho = Union[float, Tuple[float, float], Sequence[float]]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``tensor`` holds NaN or inf."""
    if not torch.is_floating_point(tensor):
        return
    # A sum reads the tensor once without an N x M boolean temporary; any NaN/inf
    # entry makes it non-finite (a finite sum proves all entries finite). Only if
    # it is not finite (NaN/inf, or an overflow of huge finite entries) look closer.
    tensor = tensor.detach()
    acc = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(tensor.sum(dtype=acc))) or bool(torch.isfinite(tensor).all()):
        return
    what = 'NaN' if bool(torch.isnan(tensor).any()) else 'inf'
    raise ValueError(f'`{name}` contains {what} values; every entry of `{name}` must be '
                     f'finite.')


def check_float(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` is a floating point tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f'`{name}` must be a torch.Tensor, got {type(tensor).__name__}.')
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f'`{name}` must be float16, bfloat16, float32 or float64, '
                        f'got {tensor.dtype}.')


def check_real(name: str, value) -> float:
    """Return ``value`` as a float; ``ValueError`` naming ``name`` unless it is a real
    number: what ``float()`` takes (numpy scalars, ``Decimal``, a one-element tensor or
    array), but not None, a bool or a string."""
    if isinstance(value, torch.Tensor):
        size = value.numel()
    else:  # numpy arrays and scalars (0-d arrays are not numbers.Real)
        size = getattr(value, 'size', None) if type(value).__module__ == 'numpy' else None
    if size == 1:
        value = value.item()
    if value is None or isinstance(value, (bool, str, bytes)):
        raise ValueError(f'`{name}` must be a number, got {value!r}.')
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f'`{name}` must be a number, got {value!r}.') from None


def check_epsilon(epsilon: float, name: str = 'epsilon') -> float:
    """Return ``epsilon`` as a float after checking it is finite and positive; ``name``
    is the argument's name in the error."""
    epsilon = check_real(name, epsilon)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f'`{name}` must be a finite positive number, got {epsilon}.')
    return epsilon


def parse_rho(rho: Rho) -> Tuple[float, float]:
    """Return ``(rho_a, rho_b)`` from a number or a pair; ``inf`` means balanced."""
    given = rho
    if isinstance(rho, torch.Tensor):
        rho = rho.tolist()
    values = [rho, rho] if _is_number(rho) else rho
    if isinstance(values, (str, bytes)) or not hasattr(values, '__len__'):
        values = None
    if values is None or not all(_is_number(r) for r in values):
        raise ValueError("`rho` must be a number or a pair (rho_a, rho_b) of numbers, "
                         f"float('inf') for balanced OT; got {given!r}.")
    values = [float(r) for r in values]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ValueError(f'`rho` must be a number or a pair (rho_a, rho_b), got {rho}.')
    pair = (values[0], values[1])
    for r in pair:
        if math.isnan(r) or r <= 0:
            raise ValueError(f'`rho` must be positive (float("inf") for a hard marginal), '
                             f'got {rho}.')
    return pair


def _is_number(value) -> bool:
    """A real number that is not a bool (numpy scalars count: np.float32 is no float)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking ``value >= minimum``."""
    try:
        whole = not isinstance(value, (bool, str)) and int(value) == value
    except (TypeError, ValueError, OverflowError):  # None, nan, inf, a tensor of several
        whole = False
    if not whole or value < minimum:
        raise ValueError(f'`{name}` must be an integer >= {minimum}, got {value!r}.')
    return int(value)


def check_cost(cost: torch.Tensor) -> None:
    """Check a dense cost of shape ``(N, M)`` or ``(B, N, M)``."""
    check_float('cost', cost)
    if cost.dim() not in (2, 3):
        raise ValueError(f'`cost` must have shape (N, M) or (B, N, M), got shape '
                         f'{tuple(cost.shape)}.')
    if cost.shape[-1] == 0 or cost.shape[-2] == 0 or (cost.dim() == 3 and cost.shape[0] == 0):
        raise ValueError(f'`cost` must be non-empty, got shape {tuple(cost.shape)}.')
    check_finite('cost', cost)


def marginal(name: str, weights: Optional[torch.Tensor], batch: Optional[int], size: int,
             dim_name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Return a ``(B, size)`` marginal, uniform ``1/size`` when ``weights`` is None.

    Args:
        name: argument name used in error messages (``'a'`` or ``'b'``).
        weights: ``(size,)`` or ``(B, size)`` non-negative weights, or None.
        batch: batch size B of the problem, or None for an unbatched problem.
        size: number of points the marginal lives on.
        dim_name: what ``size`` counts, for error messages (e.g. ``'N = cost.shape[-2]'``).
        device: device of the result.
        dtype: dtype of the result (the accumulation dtype of the solver).
    """
    b = 1 if batch is None else batch
    if weights is None:
        return torch.full((b, size), 1.0 / size, device=device, dtype=dtype)
    check_float(name, weights)
    expected = (size,) if batch is None else (batch, size)
    if weights.dim() == 1 and weights.shape[0] == size:
        weights = weights.unsqueeze(0).expand(b, size)
    elif tuple(weights.shape) != expected:
        raise ValueError(f'`{name}` must have shape {expected} ({dim_name}), got shape '
                         f'{tuple(weights.shape)}.')
    check_finite(name, weights)
    if bool((weights < 0).any()):
        raise ValueError(f'`{name}` must be non-negative.')
    if bool((weights.sum(-1) <= 0).any()):
        raise ValueError(f'`{name}` must have positive total mass.')
    return weights.to(device=device, dtype=dtype)



def initial_potential(name: str, value: Optional[torch.Tensor], like: torch.Tensor,
                      batched: bool) -> Optional[torch.Tensor]:
    """A user's warm-start potential ``f_init``/``g_init`` as a ``(B, size)`` tensor.

    Args:
        name: argument name used in error messages.
        value: ``(size,)`` (unbatched) or ``(B, size)`` finite potential, or None.
        like: the ``(B, size)`` marginal it goes with: its shape, device and dtype.
        batched: whether the problem is batched.
    """
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f'`{name}` must be a tensor (a potential from an earlier result, '
                        f'e.g. result.f), got {type(value).__name__}.')
    expected = tuple(like.shape) if batched else tuple(like.shape[1:])
    if tuple(value.shape) != expected:
        raise ValueError(f'`{name}` must have shape {expected}, got {tuple(value.shape)}.')
    check_finite(name, value)
    value = value.detach().to(device=like.device, dtype=like.dtype)
    return value if batched else value.unsqueeze(0)

# Least relative tolerance on |a.sum() - b.sum()| for balanced OT (POT's emd checks
# the masses to 6 decimals; Sinkhorn on unequal masses never converges).
BALANCED_MASS_RTOL = 1e-6


def balanced_masses(a: torch.Tensor, b: torch.Tensor, rho: Tuple[float, float],
                    a_given: Optional[torch.Tensor] = None,
                    b_given: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``b`` with the total mass of ``a`` when ``rho`` is balanced (inf, inf).

    Totals that differ by no more than the rounding of the weights as given
    (:func:`_rounding_rtol`, at least :data:`BALANCED_MASS_RTOL`: weights normalised in
    fp32 over 1e5 points miss 1 by ~2e-6, in fp16 over 100 by ~2e-4) are made equal by
    scaling ``b``; larger gaps are an error.

    Args:
        a: ``(B, N)`` source weights; b: ``(B, M)`` target weights (solver dtype).
        rho: ``(rho_a, rho_b)``.
        a_given, b_given: the weights as the caller passed them (None: uniform), whose
            dtypes set the tolerance.

    Returns:
        ``b``, rescaled per problem where needed.

    Raises:
        ValueError: balanced and the totals differ beyond the rounding.
    """
    if not (math.isinf(rho[0]) and math.isinf(rho[1])):
        return b
    mass_a, mass_b = a.sum(-1), b.sum(-1)
    rtol = max([BALANCED_MASS_RTOL] + [_rounding_rtol(given)
                                       for given in (a_given, b_given) if given is not None])
    relative = (mass_a - mass_b).abs() / torch.maximum(mass_a, mass_b)
    gap = relative > rtol
    if bool(gap.any()):
        i = int(gap.nonzero()[0, 0])
        raise ValueError(
            f'balanced OT (rho=inf) needs equal total masses, got a.sum()='
            f'{float(mass_a[i]):.9g} and b.sum()={float(mass_b[i]):.9g} (relative gap '
            f'{float(relative[i]):.2g}, beyond the {rtol:.2g} that rounding the weights '
            'allows); rescale `a` or `b` to the same total, or pass a finite `rho` for '
            'unbalanced OT.')
    return b * (mass_a / mass_b).unsqueeze(-1)


def _rounding_rtol(weights: torch.Tensor) -> float:
    """How far the total of ``weights`` may miss its intended value by rounding alone.

    Rounding each weight to its dtype moves the total by at most ``eps / 2`` of it, plus
    half the subnormal spacing per weight for weights below the dtype's smallest normal
    (fp16 weights ``1/n`` are subnormal beyond n ~ 16k); fp32 and fp64 weights may also
    come from a normalisation by a sum in their own precision, which errs by ~``sqrt(n)
    eps``. Hence ``2 sqrt(n) eps`` for those and ``2 eps`` for fp16 and bf16 weights
    (whose sums torch accumulates in fp32), each plus the subnormal term: a bound
    growing with ``sqrt(n)`` let fp16 weights over 1e4 points differ by 20 %.
    """
    info = torch.finfo(weights.dtype)
    n = weights.shape[-1]
    mass = float(weights.detach().double().sum(-1).min()) if weights.numel() else 0.0
    subnormal = n * info.smallest_normal * info.eps / max(mass, info.tiny)
    if weights.dtype in (torch.float16, torch.bfloat16):
        return 2.0 * info.eps + subnormal
    return 2.0 * math.sqrt(n) * info.eps + subnormal


def check_features(name: str, x: torch.Tensor) -> None:
    """Check a ``(N, D)`` feature matrix."""
    _check_feature_shape(name, x)
    check_finite(name, x)


def _check_feature_shape(name: str, x: torch.Tensor) -> None:
    check_float(name, x)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f'`{name}` must have shape (num_points, dim) with both > 0, got '
                         f'shape {tuple(x.shape)}.')


def check_projection(projection, dim: int, device: torch.device) -> None:
    """Check a ``projection`` argument against features of dimension ``dim`` on
    ``device``: None, a callable, or a floating ``(dim, D')`` matrix."""
    if projection is None or (callable(projection) and
                              not isinstance(projection, torch.Tensor)):
        return
    if not isinstance(projection, torch.Tensor):
        raise TypeError(f'`projection` must be a (D, D\') tensor or a callable, got '
                        f'{type(projection).__name__}.')
    if projection.dim() != 2 or projection.shape[0] != dim:
        raise ValueError(f'`projection` must have shape (D, D\') = ({dim}, D\') for features '
                         f'of dimension D = {dim}, got {tuple(projection.shape)}.')
    check_float('projection', projection)
    if projection.device != device:
        raise ValueError(f'`projection` must be on the features\' device, {device}, got '
                         f'{projection.device}: move it with .to({str(device)!r}).')


def check_feature_pair(x: torch.Tensor, y: torch.Tensor, x_name: str = 'x',
                       y_name: str = 'y') -> None:
    """Check two feature matrices that share their feature dimension and device
    (shapes and devices first: they are cheap, and a wrong device fails any later check)."""
    _check_feature_shape(x_name, x)
    _check_feature_shape(y_name, y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f'`{x_name}` and `{y_name}` must share their feature dimension, '
                         f'got shapes {tuple(x.shape)} and {tuple(y.shape)}.')
    if x.device != y.device:
        raise ValueError(f'`{x_name}` and `{y_name}` must be on the same device, got '
                         f'{x.device} and {y.device}: move one with .to(...).')
    check_finite(x_name, x)
    check_finite(y_name, y)
