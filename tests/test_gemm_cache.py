"""The GEMM kernels' on-disk cache follows the tile constants of gemm_tiles.py.

Numba's cache checks only the file that defines a kernel, but the GEMM kernels
inline gemm_tiles.py's constants and device functions. Each GEMM kernel is a
closure over gemm_tiles.TILES_KEY, a digest of that source, and Numba's cache
index hashes a kernel's closure contents: these tests show the key Numba files
a compiled kernel under changes with the tiles. Needs no GPU.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
from numba import config, float32, int64

from fastmlp.kernels import backward_input, gemm_tiles, linear_backward, linear_forward

pytestmark = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="the simulator has no on-disk cache")

KERNELS = {
    "linear_forward": linear_forward,
    "linear_backward": linear_backward,
    "backward_input": backward_input,
}
HERE = Path(gemm_tiles.__file__).resolve().parent


def _sources(**replace):
    text = (HERE / "gemm_tiles.py").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return [text, (HERE / "bias_act_forward.py").read_text()]


def test_the_key_is_a_digest_of_the_inlined_sources():
    assert gemm_tiles.tiles_key(_sources()) == gemm_tiles.TILES_KEY
    assert gemm_tiles.tiles_key(_sources(**{"TILE = 32": "TILE = 64"})) != gemm_tiles.TILES_KEY
    assert gemm_tiles.tiles_key(_sources(**{"BK = 32": "BK = 16"})) != gemm_tiles.TILES_KEY
    assert 0 <= gemm_tiles.TILES_KEY < 2**56  # an int64 constant inside the kernels


@pytest.mark.parametrize("name", list(KERNELS))
def test_every_gemm_kernel_holds_the_key_in_its_closure(name):
    module = KERNELS[name]
    for kernel in module._cuda_kernels(gemm_tiles.TILES_KEY):
        cells = [c.cell_contents for c in kernel.py_func.__closure__ or ()]
        assert cells == [gemm_tiles.TILES_KEY], kernel
    cached = [getattr(module, n) for n in dir(module) if n.endswith("_cuda")]
    assert len(cached) == 2 and all(k.py_func.__closure__[0].cell_contents == gemm_tiles.TILES_KEY for k in cached)


@pytest.mark.parametrize("name", list(KERNELS))
def test_numbas_cache_index_key_changes_with_the_tiles(name):
    """The key under which Numba's cache stores and looks up a compiled kernel: equal for
    the same tiles, different after a tile change, so a kernel compiled for the old tiles
    is never loaded (the host's grid would not match it)."""
    module = KERNELS[name]
    codegen = SimpleNamespace(magic_tuple=lambda: ("nvptx64-nvidia-cuda", "sm_90", ""))
    sig = (float32[:, ::1],) * 4 + (int64,)  # any signature: only the closure part differs
    changed = gemm_tiles.tiles_key(_sources(**{"TILE = 32": "TILE = 64"}))
    for now, again, other in zip(module._cuda_kernels(gemm_tiles.TILES_KEY), module._cuda_kernels(gemm_tiles.TILES_KEY),
                                 module._cuda_kernels(changed)):
        key = now._cache._index_key(sig, codegen)
        assert key == again._cache._index_key(sig, codegen)
        assert key != other._cache._index_key(sig, codegen)
        # the same index file: the entry for the old tiles is simply not found under the new key
        assert now._cache._cache_file._index_path == other._cache._cache_file._index_path
