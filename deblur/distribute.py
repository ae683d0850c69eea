"""Multi-worker training: tf.distribute.MultiWorkerMirroredStrategy made usable by Keras 3's fit.

Keras 3 (3.15) builds the model before the first epoch by reducing one distributed input batch
with `strategy.reduce("MEAN", batch)`; the batch is a nested structure ({"image", "step"}, y).
MirroredStrategy maps its reduction over nested structures, MultiWorkerMirroredStrategy (TF 2.21)
does not and fails with "Attempt to convert a value ({'image': PerReplica...}) ... to a Tensor"
as soon as there are two workers. Then each training step reduces its scalar metrics (the loss)
across workers with `strategy.reduce("MEAN", loss, axis=0)`, which fails on a scalar ("Invalid
reduction dimension 0 for input with 0 dimensions"). `multi_worker_strategy()` returns the
strategy with `reduce` mapped over nested structures (each leaf is still one collective
all-reduce, in the same order on every worker), as MirroredStrategy does, and scalars averaged
over the replicas (axis None), which is what the reduction of a scalar along axis 0 must mean.

It must be created before anything else initialises TensorFlow's runtime (collective ops are
configured at program start): `deblur.train` creates its strategy first.
"""
from __future__ import annotations


def multi_worker_strategy():
    """tf.distribute.MultiWorkerMirroredStrategy (cluster from TF_CONFIG) whose reduce accepts
    nested structures."""
    import tensorflow as tf

    class NestedReduceMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            parent = super()

            def leaf(v):
                scalar = all(getattr(t, "shape", None) is not None and t.shape.rank == 0
                             for t in self.experimental_local_results(v))
                return parent.reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(leaf, value)

    return NestedReduceMultiWorkerStrategy()
