"""Shared-memory tiled GEMM pieces for the CUDA kernels of the dense layer.

One loop serves the three products of a dense layer (``linear_forward``,
``linear_backward``, ``backward_input``); only the layout of the two operands
and the epilogue differ.

Shapes and names
    C (M, Nc) = A' @ B' with reduction depth R, where A' (M, R) and B' (R, Nc)
    are the operands as the product reads them. In memory each operand is a
    C-contiguous 2-D array stored one of two ways:
        RED_ROWS  X[r, m]: the reduction index picks the row (W in the forward,
                  a and delta in the weight gradient)
        RED_COLS  X[m, r]: the reduction index picks the column (a in the
                  forward, delta and W in the input gradient)
    The loader maps consecutive threads to consecutive addresses for either
    layout (along m for RED_ROWS, along r for RED_COLS), so every global load is
    coalesced; the shared tile is always S[r, m], so the inner loop is the same.

Tiling
    A block of THREADS threads computes a TILE x TILE tile of C. Each thread
    owns PER_DIM x PER_DIM outputs spaced TILE // PER_DIM apart (not adjacent),
    so a warp's shared-memory reads and its global stores are consecutive.
    The reduction advances BK at a time through two shared tiles (BK x TILE,
    padded by one column so the transposing store of RED_COLS has no bank
    conflicts). The next step's global loads are issued into registers before
    the current step's arithmetic, so their latency overlaps the math.

Split-K
    The grid is (column tiles, row tiles, split). With split > 1, block z
    reduces only its own chunk of k_chunk (a multiple of BK) and writes its raw
    partial tile into the scratch ``part`` (split, M, Nc) (flat); a second
    kernel sums the split slices in order 0, 1, ... and applies the epilogue.
    No atomics anywhere: the same inputs give bit-identical outputs.
    ``choose_split`` picks the split from the shapes (see there).

Activations
    ``activate`` and ``activation_backward`` are the device-side forms of
    bias_act_forward's activation and of relu/sigmoid/tanh_backward, with the
    same formulas: codes IDENTITY, RELU, SIGMOID, TANH.

Every constant takes the operands' dtype (``X.dtype.type(0)``, ``type(u)(1)``),
so float32 kernels do no float64 arithmetic.

On-disk cache
    The GEMM kernels (linear_forward.py, linear_backward.py, backward_input.py)
    are cached with ``cache=True``, and Numba's cache checks only the file that
    defines a kernel; the constants and device functions here are compiled into
    it. So each GEMM kernel is a closure over ``TILES_KEY``, a digest of this
    file and of bias_act_forward.py (the activation codes): Numba's cache index
    hashes a kernel's closure contents, so any change here compiles the kernels
    afresh instead of loading ones built for other tiles, whose grid the host
    would no longer match.
"""

import hashlib
import math
from pathlib import Path

from numba import cuda

from .bias_act_forward import RELU, SIGMOID, TANH

TILE = 32  # output tile: TILE x TILE elements of C per block
BK = 32  # reduction depth per shared-memory step
PER_DIM = 2  # each thread owns PER_DIM x PER_DIM outputs of its tile
STRIDE = TILE // PER_DIM  # threads along each side of the tile; also the spacing of a thread's outputs
THREADS = STRIDE * STRIDE  # 256 threads per block
OWNED = PER_DIM * PER_DIM  # outputs per thread
LOADS = BK * TILE // THREADS  # elements of each operand tile one thread loads per step
ROW = TILE + 1  # shared tile row: one spare column, so RED_COLS's transposing stores hit 32 banks
REDUCE_THREADS = 256  # block size of the split-K reduce kernels (one thread per output)

RED_ROWS, RED_COLS = 0, 1


def tiles_key(sources=None):
    """A 56-bit digest (an int, so a kernel can hold it as a constant) of the source
    text the GEMM kernels inline from other files: this module and
    bias_act_forward.py, or ``sources`` (texts) if given. Where a source cannot be
    read (a frozen install), the constants themselves stand in for it."""
    if sources is None:
        here = Path(__file__).resolve().parent
        try:
            sources = [(here / name).read_text() for name in ("gemm_tiles.py", "bias_act_forward.py")]
        except OSError:
            sources = [repr((TILE, BK, PER_DIM, ROW, REDUCE_THREADS, RELU, SIGMOID, TANH))]
    digest = hashlib.sha256("\0".join(sources).encode()).digest()
    return int.from_bytes(digest[:7], "little")


TILES_KEY = tiles_key()  # see "On-disk cache" above

# Split-K heuristic (reasoned, not measured on a GPU). On an
# H100 (132 SMs) a grid of a few dozen blocks leaves most SMs idle, so the
# reduction is split until the grid has about TARGET_BLOCKS blocks; but every
# chunk keeps at least MIN_STEPS_PER_SPLIT steps of BK, since each split adds
# a (split, M, Nc) write and read and a second launch.
TARGET_BLOCKS = 132
MIN_STEPS_PER_SPLIT = 3
MAX_SPLIT = 16


def tiles(extent):
    """Number of TILE-wide tiles covering ``extent`` (at least one)."""
    return max(1, -(-extent // TILE))


def choose_split(m, nc, r):
    """Split-K factor for C (m, nc) with reduction depth r.

    1 when the output tiles alone fill TARGET_BLOCKS or the reduction has
    fewer than 2 * MIN_STEPS_PER_SPLIT steps of BK; otherwise enough slices to
    reach TARGET_BLOCKS blocks, at most one per MIN_STEPS_PER_SPLIT steps and at
    most MAX_SPLIT. E.g. the first MNIST layer's forward, (128, 128) with
    r = 784 (25 steps, 16 tiles): min(9, 8, 16) = 8, which ``split_chunks``
    turns into 7 chunks of 4 steps (112 blocks); its other GEMMs get 1.
    """
    steps = -(-r // BK)
    out_tiles = tiles(m) * tiles(nc)
    if out_tiles >= TARGET_BLOCKS or steps < 2 * MIN_STEPS_PER_SPLIT:
        return 1
    return min(-(-TARGET_BLOCKS // out_tiles), steps // MIN_STEPS_PER_SPLIT, MAX_SPLIT)


def split_chunks(r, split):
    """(k_chunk, split') for a requested split: the chunk is a whole number of
    BK steps, and split' <= split is the number of chunks that are not empty."""
    steps = max(1, -(-r // BK))
    per = -(-steps // max(1, min(split, steps)))
    return per * BK, -(-steps // per)


@cuda.jit(device=True)
def activate(u, code):
    """act(u) in u's dtype, with bias_act_forward's formulas."""
    f = type(u)
    if code == RELU:
        if u < f(0):  # a NaN stays NaN, as in np.maximum
            u = f(0)
    elif code == SIGMOID:
        u = f(1) / (f(1) + math.exp(-u))
    elif code == TANH:
        u = math.tanh(u)
    return u


@cuda.jit(device=True)
def activation_backward(d, o, code):
    """d * act'(z) from the forward output o = act(z), computed as relu_backward,
    sigmoid_backward and tanh_backward do (IDENTITY: d)."""
    f = type(d)
    if code == RELU:
        if not o > f(0):
            d *= f(0)  # 0, or NaN for a NaN/inf gradient, like relu_backward
    elif code == SIGMOID:
        d *= o - o * o
    elif code == TANH:
        d -= d * o * o
    return d


@cuda.jit(device=True)
def _coords(e, layout):
    """(r, m) of element e of a BK x TILE operand tile, in the order the loads walk
    it: m fastest for RED_ROWS, r fastest for RED_COLS (the contiguous index)."""
    if layout == RED_ROWS:
        r = e // TILE
        return r, e - r * TILE
    m = e // BK
    return e - m * BK, m


@cuda.jit(device=True)
def _fetch(regs, X, layout, m0, k0, m_end, k_end, edge):
    """regs <- this thread's LOADS elements of the operand tile at (k0, m0).

    Outside the array they are 0, except that the column m == m_end reads
    ``edge``: 1 gives the operand an extra column of ones (linear_backward's
    bias gradient), 0 is plain zero padding."""
    t = cuda.threadIdx.x
    for q in range(LOADS):
        r, m = _coords(t + q * THREADS, layout)
        r += k0
        m += m0
        v = type(edge)(0)
        if r < k_end:
            if m < m_end:
                v = X[r, m] if layout == RED_ROWS else X[m, r]
            elif m == m_end:
                v = edge
        regs[q] = v


@cuda.jit(device=True)
def _stash(S, regs, layout):
    """S[r, m] <- the elements _fetch loaded into regs."""
    t = cuda.threadIdx.x
    for q in range(LOADS):
        r, m = _coords(t + q * THREADS, layout)
        S[r, m] = regs[q]


@cuda.jit(device=True)
def owned(q):
    """(row, col) in C of this thread's q-th output, 0 <= q < OWNED."""
    i = q // PER_DIM
    j = q - i * PER_DIM
    t = cuda.threadIdx.x
    ty = t // STRIDE
    tx = t - ty * STRIDE
    return cuda.blockIdx.y * TILE + ty + i * STRIDE, cuda.blockIdx.x * TILE + tx + j * STRIDE


@cuda.jit(device=True)
def tile_product(acc, A, a_layout, a_extent, a_edge, B, b_layout, b_extent, depth, k_chunk):
    """acc[q] <- output ``owned(q)`` of A' @ B', summed over this block's chunk
    [z * k_chunk, (z + 1) * k_chunk) of the reduction (0..depth).

    A' has a_extent rows (plus a row a_edge-valued, see _fetch), B' b_extent
    columns; the block's tile is (blockIdx.y, blockIdx.x), its chunk blockIdx.z.
    The terms of each output are added in reduction order, so results do not
    depend on the grid.
    """
    k_begin = cuda.blockIdx.z * k_chunk
    k_end = min(depth, k_begin + k_chunk)
    m0 = cuda.blockIdx.y * TILE
    n0 = cuda.blockIdx.x * TILE
    zero = type(a_edge)(0)
    SA = cuda.shared.array((BK, ROW), A.dtype)
    SB = cuda.shared.array((BK, ROW), B.dtype)
    ra = cuda.local.array(LOADS, A.dtype)
    rb = cuda.local.array(LOADS, B.dtype)
    t = cuda.threadIdx.x
    ty = t // STRIDE
    tx = t - ty * STRIDE
    for q in range(OWNED):
        acc[q] = zero
    _fetch(ra, A, a_layout, m0, k_begin, a_extent, k_end, a_edge)
    _fetch(rb, B, b_layout, n0, k_begin, b_extent, k_end, zero)
    for k0 in range(k_begin, k_end, BK):
        _stash(SA, ra, a_layout)
        _stash(SB, rb, b_layout)
        cuda.syncthreads()
        if k0 + BK < k_end:  # the next step's loads fly while this step computes
            _fetch(ra, A, a_layout, m0, k0 + BK, a_extent, k_end, a_edge)
            _fetch(rb, B, b_layout, n0, k0 + BK, b_extent, k_end, zero)
        for r in range(BK):
            for i in range(PER_DIM):
                av = SA[r, ty + i * STRIDE]
                for j in range(PER_DIM):
                    acc[i * PER_DIM + j] += av * SB[r, tx + j * STRIDE]
        cuda.syncthreads()


@cuda.jit(device=True)
def store_partial(acc, part, rows, cols):
    """Write acc into slice blockIdx.z of the split-K scratch part (split, rows, cols), flat."""
    base = cuda.blockIdx.z * rows * cols
    for q in range(OWNED):
        i, j = owned(q)
        if i < rows and j < cols:
            part[base + i * cols + j] = acc[q]


@cuda.jit(device=True)
def split_sum(part, split, size, e):
    """Element e of the sum of the split slices of part, each of ``size`` elements,
    added in slice order (deterministic)."""
    total = part[e]
    for s in range(1, split):
        total += part[s * size + e]
    return total
