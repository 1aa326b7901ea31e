"""Try steering by hand: prompt, pair, layer and coefficient as widgets, completions side by side.

    explore(model)                       # in JupyterLab: widgets, refreshed on change
    explore(model, widgets=False)        # anywhere: prints and returns one table

Without ipywidgets or outside a Jupyter kernel (scripts, tests), ``explore`` prints the
table for the given arguments and returns it as a DataFrame. Under papermill a kernel is
running, so pass ``widgets=False`` there to get the table in the executed notebook.
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd import generate_sweep, model_info, resolve_layer, steering_vector
from actadd.checks import integer

# The paper's best-known example, 'Love' - 'Hate' at layer 6 with c = 5 (on GPT-2-XL).
DEFAULT_PROMPT, DEFAULT_PAIR, DEFAULT_LAYER, DEFAULT_COEFF = (
    "I went up to my friend and said",
    (" Love", " Hate"),
    6,
    5.0,
)
COEFF_RANGE = (-20.0, 20.0)


def completions_table(
    model: TransformersModel,
    prompt: str,
    p_plus: str,
    p_minus: str,
    layer: int,
    coeff: float,
    *,
    n_samples: int = 2,
    max_new_tokens: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """``n_samples`` unsteered and steered completions of ``prompt``, one row per seed, side by side.

    Row ``i`` of both columns uses the same seed, so the columns differ only by the steering.
    """
    vector = steering_vector(model, p_plus, p_minus, layer=layer, coeff=coeff)
    unsteered, steered = generate_sweep(
        model,
        prompt,
        [None, vector],
        n_samples,
        seed=seed,
        max_new_tokens=max_new_tokens,
        progress=False,
    )
    label = f"steered: {p_plus!r} - {p_minus!r}, layer {vector.layer}, c = {coeff:g}"
    return pd.DataFrame({"unsteered": unsteered, label: steered})


class Explorer:
    """The widgets of :func:`explore`; ``refresh()`` recomputes ``table`` from the controls."""

    def __init__(
        self,
        model: TransformersModel,
        *,
        prompt: str,
        p_plus: str,
        p_minus: str,
        layer: int,
        coeff: float,
        n_samples: int,
        max_new_tokens: int,
        seed: int,
    ) -> None:
        import ipywidgets as w

        self.model, self.n_samples, self.max_new_tokens, self.seed = model, n_samples, max_new_tokens, seed
        n_layers = model_info(model).n_layers
        layout = w.Layout(width="95%")
        self.controls: dict[str, Any] = {
            "prompt": w.Text(value=prompt, description="prompt", continuous_update=False, layout=layout),
            "p_plus": w.Text(value=p_plus, description="p+", continuous_update=False, layout=layout),
            "p_minus": w.Text(value=p_minus, description="p-", continuous_update=False, layout=layout),
            "layer": w.IntSlider(value=layer, min=0, max=n_layers - 1, description="layer", continuous_update=False),
            "coeff": w.FloatSlider(
                value=coeff,
                min=COEFF_RANGE[0],
                max=COEFF_RANGE[1],
                step=0.5,
                description="coeff",
                continuous_update=False,
            ),
        }
        self.output = w.Output()
        self.table: pd.DataFrame | None = None
        for control in self.controls.values():
            control.observe(lambda _change: self.refresh(), names="value")
        self.box = w.VBox([*self.controls.values(), self.output])

    def values(self) -> dict[str, Any]:
        """The controls' current values, by argument name."""
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self) -> pd.DataFrame | None:
        """Recompute the completions for the current values and show them (or the input error)."""
        from IPython.display import display

        self.output.clear_output(wait=True)
        try:
            self.table = completions_table(
                self.model,
                **self.values(),
                n_samples=self.n_samples,
                max_new_tokens=self.max_new_tokens,
                seed=self.seed,
            )
        except ValueError as err:  # e.g. an empty pair: say so next to the controls
            self.table = None
            with self.output:
                print(f"ValueError: {err}")
            return None
        with self.output:
            display(_styled(self.table))
        return self.table


def explore(
    model: TransformersModel,
    prompt: str = DEFAULT_PROMPT,
    p_plus: str = DEFAULT_PAIR[0],
    p_minus: str = DEFAULT_PAIR[1],
    layer: int | float = DEFAULT_LAYER,
    coeff: float = DEFAULT_COEFF,
    n_samples: int = 2,
    max_new_tokens: int = 30,
    seed: int = 0,
    *,
    widgets: bool | None = None,
) -> Any:
    """Unsteered and steered completions side by side, as live widgets or as one printed table.

    ``widgets=None`` uses widgets when ipywidgets is installed and a Jupyter kernel is
    running; the widget box is returned (end a cell with it to show it). Otherwise, or with
    ``widgets=False``, the table for the given arguments is printed and returned.
    """
    # Checked before any widget is built, so a bad value fails here and not in a callback.
    layer = resolve_layer(layer, model_info(model))
    integer(n_samples, "n_samples", minimum=1)
    if widgets is None:
        widgets = _widgets_available() and _in_kernel()
    elif widgets and not _widgets_available():
        raise ValueError("widgets=True needs ipywidgets: pip install 'ipywidgets>=8' (or pass widgets=False)")
    if widgets:
        explorer = Explorer(
            model,
            prompt=prompt,
            p_plus=p_plus,
            p_minus=p_minus,
            layer=layer,
            coeff=coeff,
            n_samples=n_samples,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        explorer.refresh()
        return explorer.box
    table = completions_table(
        model, prompt, p_plus, p_minus, layer, coeff, n_samples=n_samples, max_new_tokens=max_new_tokens, seed=seed
    )
    with pd.option_context("display.max_colwidth", None, "display.width", 200):
        print(f"prompt: {prompt!r}")
        print(table.to_string())
    return table


def _styled(table: pd.DataFrame) -> Any:
    """Left-aligned, wrapping cells: completions read better than in the default right-aligned view."""
    return table.style.set_properties(**{"text-align": "left", "white-space": "pre-wrap"})


def _widgets_available() -> bool:
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Colab, papermill), not in scripts or pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")
