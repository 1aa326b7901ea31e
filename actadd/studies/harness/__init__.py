"""How a claim is measured here: what a study is (its parameters, claims and outputs), the
methods it compares and how their settings are chosen, the judges it trusts, and how numbers
become tables, figures and prose."""
