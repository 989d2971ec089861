"""Max unpooling (SegNet's decoder), forward and backward: a 2x2/2 max pool's output
put back by its indices (the matrix of ``asv_bench/compare.py``).

Parameters and methods as :mod:`bench_pooling` (layout, dtype, shape family,
threads; ``time_forward`` / ``time_backward``, ``peakmem_forward`` less
``peakmem_reference``). The family's shape is the pooling's input, which is also
the unpooled output's shape.
"""

import fastpool

from .bench_pooling import _params, _Pool
from .common import cpu_count, in_layout, random_array


class MaxUnpool2d(_Pool):
    families = {"segnet_224": ((8, 64, 224, 224), 2, 2, 0), "segnet_112": ((8, 64, 112, 112), 2, 2, 0)}
    params = _params(families)

    def setup(self, layout, dtype, family, threads):
        if threads > cpu_count():
            raise NotImplementedError(f"only {cpu_count()} CPUs")
        shape, k, s, p = self.families[family]
        self.geom = dict(kernel_size=(k, k), stride=(s, s), padding=(p, p))
        self.layout = layout
        full = random_array(in_layout(shape, layout), dtype, seed=0)
        self.x, self.idx = fastpool.max_pool(full, layout=layout, return_indices=True, **self.geom)
        self.g = random_array(full.shape, dtype, seed=1)
        self.previous = fastpool.set_num_threads(threads)

    def forward(self):
        return fastpool.max_unpool(self.x, self.idx, layout=self.layout, **self.geom)

    def backward(self):
        return fastpool.max_unpool_backward(self.g, self.idx, layout=self.layout, **self.geom)
