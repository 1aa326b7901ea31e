"""A study's lifecycle: its parameters, the claims it declares before it runs (:mod:`.claims`),
the seed streams it chooses and reports on (:mod:`.streams`), what it writes while it runs
(:mod:`.study`) and the record it leaves behind, read back through one type (:mod:`.record`)."""
