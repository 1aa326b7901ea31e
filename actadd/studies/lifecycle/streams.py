"""The studies' seed streams (``actadd.row_seeds(seed, n, stream=...)``): settings are chosen on
draws of :data:`SELECT` and reported on fresh draws of :data:`CONFIRM`, which share no seed."""

SELECT = 1
CONFIRM = 2
