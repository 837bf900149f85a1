"""Keras's BatchNormalization in torch, ``tf.nn.batch_normalization``, and converters both ways.

>>> import torch, normcore.keras
>>> bn = normcore.keras.BatchNormalization()              # Keras's defaults: axis=-1, momentum=0.99, epsilon=1e-3
>>> y = bn(torch.randn(8, 4, 4, 3), training=True)        # builds from the first call: 3 features, channels last
>>> [w.shape for w in bn.get_weights()]                   # Keras's list: gamma, beta, moving_mean, moving_variance
[(3,), (3,), (3,), (3,)]
>>> torch_bn, notes = normcore.keras.to_torch(bn, torch.nn.BatchNorm2d)
>>> torch_bn.momentum                                     # Keras's 0.99 weights the old value, torch's the new
0.01

Keras itself is never imported (it is a test dependency only: the tests compare with it).
"""

from .batch_normalization import BatchNormalization
from .convert import Conversion, from_torch, to_torch
from .tf_nn import tf_batch_normalization

__all__ = ["BatchNormalization", "Conversion", "from_torch", "tf_batch_normalization", "to_torch"]
