"""How numbers become text and pictures: intervals and tables as text (:mod:`.formatting`),
prose rendered from a run's numbers (:mod:`.prose`) and the figure shapes the studies share
(:mod:`.plots`)."""
