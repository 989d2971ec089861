"""Corner, center and cascade corner pooling (CornerNet, CenterNet), forward and
backward, on the 128 x 128 maps of a 511 x 511 input (the matrix of
``asv_bench/compare.py``).

Parameters and methods as :mod:`bench_pooling` (layout, dtype, shape family,
threads; ``time_forward`` / ``time_backward``, ``peakmem_forward`` less
``peakmem_reference``).
"""

import fastpool

from .bench_pooling import _params
from .bench_reductions import _Reduction

CORNERNET_MAP = (4, 128, 128, 128)  # CornerNet's pooling input: 128 channels at stride 4


class CornerPool(_Reduction):
    op = "corner_pool"
    families = {"top_left": (CORNERNET_MAP, dict(direction="top_left")),
                "top": (CORNERNET_MAP, dict(direction="top")),
                "left": (CORNERNET_MAP, dict(direction="left"))}
    params = _params(families)


class CenterPool(_Reduction):
    op = "center_pool"
    families = {"centernet": (CORNERNET_MAP, {})}
    params = _params(families)


class CascadeCornerPool(_Reduction):
    """CenterNet's cascade top-left corner pooling, one input as boundary and inner."""

    op = "cascade_corner_pool"
    families = {"top_left": (CORNERNET_MAP, dict(corner="top_left"))}
    params = _params(families)

    def forward(self):
        return fastpool.cascade_corner_pool(self.x, self.x, layout=self.layout, **self.kw)

    def backward(self):
        return fastpool.cascade_corner_pool_backward(self.g, self.x, self.x, layout=self.layout, **self.kw)
