"""Unlearning methods; importing this package registers every method in ``base.METHODS``."""

from components.unlearning import reference, mixunlearn, baselines  # noqa: F401, I001  (registration order = listing order)
