"""The page's components that several tabs share: input components that leave refusing a bad value to the
handler, and text for Markdown components.

The input components (``Number``, ``Slider``, ``Dropdown``, ``Radio``, ``CheckboxGroup``) hand a value Gradio can't
read (None, text or NaN for a number, a name not among the choices, as an API call can send) to the handler as
sent, and the handler refuses it with a sentence (``studio.errors.page_errors``): Gradio's own preprocessing fails
on such values with a bare "Error" (no message) or a message that echoes the value into the browser's toast, which
renders HTML.
"""

from __future__ import annotations

import html
import math

import gradio as gr


def text(value) -> str:
    """Text for a Markdown component, shown as text: HTML escaped and Markdown's own characters backslashed."""
    escaped = html.escape(str(value), quote=False)
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~" else ch for ch in escaped)


# -- input components that leave refusing to the handler ----------------------------------------------------------

def _a_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _among(value, choices) -> bool:
    values = [v for _, v in choices]
    try:
        if isinstance(value, list):
            return all(v in values for v in value)
        return value in values
    except TypeError:  # an unhashable or incomparable value
        return False


class Number(gr.Number):
    """``gr.Number``; a value that is not a finite number reaches the handler as sent (see the module's doc)."""

    is_template = True  # drawn in the browser as gr.Number

    def preprocess(self, payload):
        return super().preprocess(payload) if _a_number(payload) else payload


class Slider(gr.Slider):
    """``gr.Slider``; a value that is not a finite number reaches the handler as sent (see the module's doc)."""

    is_template = True

    def preprocess(self, payload):
        return super().preprocess(payload) if _a_number(payload) else payload


class Dropdown(gr.Dropdown):
    """``gr.Dropdown``; a value not among the choices reaches the handler as sent (see the module's doc)."""

    is_template = True

    def preprocess(self, payload):
        return super().preprocess(payload) if _among(payload, self.choices) else payload


class Radio(gr.Radio):
    """``gr.Radio``; a value not among the choices reaches the handler as sent (see the module's doc)."""

    is_template = True

    def preprocess(self, payload):
        return super().preprocess(payload) if _among(payload, self.choices) else payload


class CheckboxGroup(gr.CheckboxGroup):
    """``gr.CheckboxGroup``; a value that is not a list of its choices reaches the handler as sent (see the
    module's doc)."""

    is_template = True

    def preprocess(self, payload):
        ok = isinstance(payload, list) and _among(payload, self.choices)
        return super().preprocess(payload) if ok else payload
