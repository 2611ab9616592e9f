"""The Attention U-Nets: Keras builders, model bundles, batched prediction, Horovod training."""
