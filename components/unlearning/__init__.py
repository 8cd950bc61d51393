"""Unlearning methods; importing this package registers every method in ``base.METHODS``."""

from components.unlearning import mixunlearn, reference  # noqa: F401  (registration side effect)
