"""Max and average pooling, forward and backward, at the shapes of common networks.

Every class takes the parameters layout, dtype, shape family and threads.
``peakmem_reference`` is empty, so its figure is the memory held after ``setup``
(input and gradient): subtract it from ``peakmem_forward``.
"""

import fastpool

from .common import DTYPES, LAYOUTS, THREADS, cpu_count, in_layout, out_shape, random_array

# family: (channels_first input shape, kernel, stride, padding)
RESNET50_STEM = ((32, 64, 112, 112), 3, 2, 1)
VGG = ((16, 128, 112, 112), 2, 2, 0)
ALEXNET = ((32, 96, 55, 55), 3, 2, 0)
AVG = ((32, 64, 56, 56), 3, 1, 1)
RESNET50_GLOBAL = ((32, 2048, 7, 7), 7, 7, 0)
AUDIO = ((64, 256, 4096), 3, 2, 1)
VIDEO = ((8, 32, 16, 56, 56), 3, 2, 1)


class _Pool:
    kind = "max"
    families = {}
    param_names = ["layout", "dtype", "family", "threads"]
    number = 1  # one call per sample: the smallest cases still take ~0.1 ms
    repeat = (3, 10, 4.0)
    warmup_time = 0.1
    timeout = 300

    def setup(self, layout, dtype, family, threads):
        if threads > cpu_count():
            raise NotImplementedError(f"only {cpu_count()} CPUs")
        shape, k, s, p = self.families[family]
        r = len(shape) - 2
        self.geom = dict(kernel_size=(k,) * r, stride=(s,) * r, padding=(p,) * r)
        self.layout = layout
        self.x = random_array(in_layout(shape, layout), dtype, seed=0)
        self.g = random_array(out_shape(self.x.shape, layout, **self.geom), dtype, seed=1)
        self.previous = fastpool.set_num_threads(threads)

    def teardown(self, *params):
        fastpool.set_num_threads(self.previous)

    def forward(self):
        return getattr(fastpool, f"{self.kind}_pool")(self.x, layout=self.layout, **self.geom)

    def backward(self):
        if self.kind == "max":
            return fastpool.max_pool_backward(self.g, self.x, layout=self.layout, **self.geom)
        return fastpool.avg_pool_backward(self.g, self.x.shape, layout=self.layout, **self.geom)

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
    families = {"resnet50_stem": RESNET50_STEM, "vgg": VGG, "alexnet": ALEXNET}
    params = _params(families)


class AvgPool2d(_Pool):
    kind = "avg"
    families = {"avg": AVG, "resnet50_global": RESNET50_GLOBAL}
    params = _params(families)


class MaxPool1d(_Pool):
    families = {"audio": AUDIO}
    params = _params(families)


class AvgPool1d(_Pool):
    kind = "avg"
    families = {"audio": AUDIO}
    params = _params(families)


class MaxPool3d(_Pool):
    families = {"video": VIDEO}
    params = _params(families)


class AvgPool3d(_Pool):
    kind = "avg"
    families = {"video": VIDEO}
    params = _params(families)


class SoftPool2d(_Pool):
    """SoftPool (Stergiou et al.) with a ResNet stem's window."""

    kind = "soft"
    families = {"resnet50_stem": RESNET50_STEM}
    params = _params(families)

    def backward(self):
        return fastpool.soft_pool_backward(self.g, self.x, layout=self.layout, **self.geom)


class MixedPool2d(_Pool):
    """Mixed max-average pooling (Lee et al.), alpha = 0.5, with a ResNet stem's window."""

    kind = "mixed"
    families = {"resnet50_stem": RESNET50_STEM}
    params = _params(families)

    def forward(self):
        return fastpool.mixed_pool(self.x, 0.5, layout=self.layout, **self.geom)

    def backward(self):
        return fastpool.mixed_pool_backward(self.g, self.x, 0.5, layout=self.layout, **self.geom)


class _ReluInput(_Pool):
    """Pooling of a ReLU's output (half zeros), as stochastic pooling and max-pooling
    dropout see in a network."""

    def setup(self, *params):
        super().setup(*params)
        self.x = self.x.clip(0)


class StochasticPool2d(_ReluInput):
    """Stochastic pooling (Zeiler & Fergus) of a ReLU's output with a ResNet stem's window:
    training draws (the backward draws again from the seed) and the inference form."""

    kind = "stochastic"
    families = {"resnet50_stem": RESNET50_STEM}
    params = _params(families)

    def forward(self):
        return fastpool.stochastic_pool(self.x, seed=1, layout=self.layout, **self.geom)

    def backward(self):
        return fastpool.stochastic_pool_backward(self.g, self.x, seed=1, layout=self.layout, **self.geom)

    def time_inference(self, *params):
        fastpool.stochastic_pool(self.x, training=False, layout=self.layout, **self.geom)


class MaxPoolDropout2d(_ReluInput):
    """Max-pooling dropout (Wu & Gu), rate 0.3, of a ReLU's output with a ResNet stem's
    window: training (the backward makes the mask again from the seed) and the inference form."""

    kind = "dropout"
    families = {"resnet50_stem": RESNET50_STEM}
    params = _params(families)

    def forward(self):
        return fastpool.max_pool_dropout(self.x, 0.3, seed=1, layout=self.layout, **self.geom)

    def backward(self):
        return fastpool.max_pool_dropout_backward(self.g, self.x, 0.3, seed=1, layout=self.layout, **self.geom)

    def time_inference(self, *params):
        fastpool.max_pool_dropout(self.x, 0.3, training=False, layout=self.layout, **self.geom)


class FractionalMaxPool2d(_Pool):
    """Graham's fractional max pooling, 2x2 windows to 1 / sqrt(2) of a ResNet stem's map;
    the backward routes through the forward's indices."""

    kind = "fractional"
    families = {"resnet50_stem": RESNET50_STEM}
    params = _params(families)

    def setup(self, layout, dtype, family, threads):
        super().setup(layout, dtype, family, threads)
        shape = self.families[family][0]
        self.kw = dict(kernel_size=2, output_size=(79, 79),
                       random_samples=(random_array((shape[0], shape[1], 2), dtype, seed=2) + 1) * 0.49)
        y, self.idx = fastpool.fractional_max_pool2d(self.x, layout=layout, return_indices=True, **self.kw)
        self.g = random_array(y.shape, dtype, seed=1)

    def forward(self):
        return fastpool.fractional_max_pool2d(self.x, layout=self.layout, **self.kw)

    def backward(self):
        return fastpool.fractional_max_pool2d_backward(self.g, self.x, 2, indices=self.idx, layout=self.layout)
