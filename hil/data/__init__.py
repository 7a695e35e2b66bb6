"""Datasets: the strict IDX parser, MNIST (checksum, cache, look-up order), MNIST-backrand."""
