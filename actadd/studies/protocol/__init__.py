"""How methods are compared: the methods as data and how they are sampled (:mod:`.methods`,
:mod:`.baselines`), how each method's setting is chosen (:mod:`.selection`), the paired
comparisons (:mod:`.comparison`), the comparison studies' protocol (:mod:`.tasks`), the judges
it trusts (:mod:`.judges`) and the figures that show a comparison (:mod:`.figures`)."""
