"""Max and average pooling, forward and backward, at the shapes of common networks.

Every class takes the same parameters: layout, dtype, shape family, threads.
``peakmem_reference`` is empty, so its figure is the memory held after ``setup``
(inputs and gradient): subtract it from ``peakmem_forward``.
"""

import fastpool

from .common import DTYPES, LAYOUTS, THREADS, cpu_count, in_layout, random_array

# family: (channels_first input shape, pooling arguments)
FAMILIES_2D = {
    "resnet50_stem": ((32, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    "vgg": ((16, 128, 112, 112), dict(kernel_size=2, stride=2, padding=0)),
    "alexnet": ((32, 96, 55, 55), dict(kernel_size=3, stride=2, padding=0)),
    "avg": ((32, 64, 56, 56), dict(kernel_size=3, stride=1, padding=1)),
}
FAMILIES_1D = {
    "audio": ((64, 256, 4096), dict(kernel_size=3, stride=2, padding=1)),
}
FAMILIES_3D = {
    "video": ((8, 32, 16, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
}


class _Pool:
    kind = "max"
    rank = 2
    families = FAMILIES_2D
    param_names = ["layout", "dtype", "family", "threads"]
    number = 1  # one call per sample: the smallest cases still take ~0.1 ms
    repeat = (3, 10, 4.0)
    warmup_time = 0.1
    timeout = 300

    def setup(self, layout, dtype, family, threads):
        if threads > cpu_count():
            raise NotImplementedError(f"only {cpu_count()} CPUs")
        shape, kw = self.families[family]
        r = self.rank
        self.kw = dict(kernel_size=(kw["kernel_size"],) * r, stride=(kw["stride"],) * r,
                       padding=(kw["padding"],) * r, layout=layout)
        self.x = random_array(in_layout(shape, layout), dtype, seed=0)
        self.previous = fastpool.set_num_threads(threads)
        y = self.forward()  # warm-up and the output shape
        self.g = random_array(y.shape, dtype, seed=1)

    def teardown(self, *params):
        fastpool.set_num_threads(self.previous)

    def forward(self):
        return getattr(fastpool, f"{self.kind}_pool")(self.x, **self.kw)

    def backward(self):
        if self.kind == "max":
            return fastpool.max_pool_backward(self.g, self.x, **self.kw)
        return fastpool.avg_pool_backward(self.g, self.x.shape, **self.kw)

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()

    def peakmem_reference(self, *params):
        pass


def _params(families):
    return [LAYOUTS, DTYPES, list(families), THREADS]


class MaxPool2d(_Pool):
    params = _params(FAMILIES_2D)


class AvgPool2d(_Pool):
    kind = "avg"
    params = _params(FAMILIES_2D)


class MaxPool1d(_Pool):
    rank = 1
    families = FAMILIES_1D
    params = _params(FAMILIES_1D)


class AvgPool1d(_Pool):
    kind = "avg"
    rank = 1
    families = FAMILIES_1D
    params = _params(FAMILIES_1D)


class MaxPool3d(_Pool):
    rank = 3
    families = FAMILIES_3D
    params = _params(FAMILIES_3D)


class AvgPool3d(_Pool):
    kind = "avg"
    rank = 3
    families = FAMILIES_3D
    params = _params(FAMILIES_3D)
