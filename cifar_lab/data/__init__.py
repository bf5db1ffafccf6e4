"""Part I, the data layer: find CIFAR-10, read it safely, split, normalise, batch.

Modules, from the disk up:

* :mod:`~cifar_lab.data.formats`: the on-disk formats (official pickles, image folders);
* :mod:`~cifar_lab.data.limits`: sizes, image headers and pickle nesting checked before decoding;
* :mod:`~cifar_lab.data.archives`: tar and zip reading, damage reported as "truncated or corrupt";
* :mod:`~cifar_lab.data.sources`: where a copy is found (argument, ``CIFAR10_SOURCE``, Keras);
* :mod:`~cifar_lab.data.cache`: decoded image folders cached as ``.npz``;
* :mod:`~cifar_lab.data.synthetic`: CIFAR-shaped stand-in data, only when asked for;
* :mod:`~cifar_lab.data.splits`: :func:`load_cifar10` (train / validation / test);
* :mod:`~cifar_lab.data.batching`: :class:`Dataset`, shuffled minibatches.

Nothing here imports TensorFlow.
"""
