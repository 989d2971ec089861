"""Bin reductions, forward and backward: global, adaptive, GeM and spatial pyramid
pooling at the shapes of CNN heads (the matrix of ``asv_bench/compare.py``), and Hopfield
pooling there.

Parameters and methods as :mod:`bench_pooling` (layout, dtype, shape family,
threads; ``time_forward`` / ``time_backward``, ``peakmem_forward`` less
``peakmem_reference``). GeM's backward also computes the gradient of p.
"""

import fastpool

from .bench_pooling import _params, _Pool
from .common import cpu_count, in_layout, random_array

RESNET50_HEAD = (64, 2048, 7, 7)  # ResNet-50's last feature map
ALEXNET_CONV5 = (32, 256, 13, 13)


class _Reduction(_Pool):
    op = ""  # the fastpool function; the backward is op + "_backward"
    shape_only = False  # the backward takes x.shape instead of x
    families = {}  # family: (channels_first input shape, keyword arguments)

    def setup(self, layout, dtype, family, threads):
        if threads > cpu_count():
            raise NotImplementedError(f"only {cpu_count()} CPUs")
        shape, self.kw = self.families[family]
        self.layout = layout
        self.x = random_array(in_layout(shape, layout), dtype, seed=0)
        self.previous = fastpool.set_num_threads(threads)
        self.g = random_array(self.forward().shape, dtype, seed=1)

    def forward(self):
        return getattr(fastpool, self.op)(self.x, layout=self.layout, **self.kw)

    def backward(self):
        a = self.x.shape if self.shape_only else self.x
        return getattr(fastpool, self.op + "_backward")(self.g, a, layout=self.layout, **self.kw)


class GlobalAvgPool(_Reduction):
    op, shape_only = "global_avg_pool", True
    families = {"resnet50_head": (RESNET50_HEAD, {})}
    params = _params(families)


class GlobalMaxPool(_Reduction):
    op = "global_max_pool"
    families = {"resnet50_head": (RESNET50_HEAD, {})}
    params = _params(families)


class AdaptiveAvgPool2d(_Reduction):
    op, shape_only = "adaptive_avg_pool", True
    families = {"alexnet_6x6": (ALEXNET_CONV5, dict(output_size=(6, 6)))}
    params = _params(families)


class GeMPool(_Reduction):
    op = "gem_pool"
    families = {"resnet50_head_p3": (RESNET50_HEAD, dict(p=3.0)), "alexnet_p3": (ALEXNET_CONV5, dict(p=3.0))}
    params = _params(families)


class SpatialPyramidPool(_Reduction):
    op = "spatial_pyramid_pool"
    families = {"alexnet_124": (ALEXNET_CONV5, dict(levels=(1, 2, 4))),
                "resnet50_head_124": (RESNET50_HEAD, dict(levels=(1, 2, 4)))}
    params = _params(families)


class HopfieldPool(_Reduction):
    """Hopfield pooling (HopfieldPooling): 4 query patterns, beta 1 / sqrt(C); the backward
    also gives the gradients of the queries and of beta."""

    op = "hopfield_pool"
    families = {"resnet50_head_q4": (RESNET50_HEAD, dict(queries=4)),
                "alexnet_q4": (ALEXNET_CONV5, dict(queries=4))}
    params = _params(families)

    def setup(self, layout, dtype, family, threads):
        shape, kw = self.families[family]
        self.families = dict(self.families)
        q = random_array((kw["queries"], shape[1]), dtype, seed=2)
        self.families[family] = (shape, dict(queries=q, beta=shape[1] ** -0.5))
        super().setup(layout, dtype, family, threads)
