"""The peer baselines of the benchmark; importing this module registers each of them in ``base.METHODS``.

``ft``, ``ga``, ``neggrad_plus``, ``rl``, ``boundary_shrink``, ``l1_sparse``, ``salun``, ``scrub``,
``bad_teacher`` and ``unsir``: one module per method, each with its own frozen config.
"""

from components.unlearning import (  # noqa: F401  (registration side effect)
    bad_teacher,
    boundary_shrink,
    finetune,
    gradient_ascent,
    l1_sparse,
    random_label,
    salun,
    scrub,
    unsir,
)

BASELINES: tuple[str, ...] = (
    "ft",
    "ga",
    "neggrad_plus",
    "rl",
    "boundary_shrink",
    "l1_sparse",
    "salun",
    "scrub",
    "bad_teacher",
    "unsir",
)
