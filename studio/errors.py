"""How the page reports failures: a known failure is one sentence in a ``gr.Error``; anything else is logged with
its traceback and shown as one sentence too, never as a stack trace in the page.

The page's input components (``Number``, ``Slider``, ``Dropdown``, ``Radio``, ``CheckboxGroup`` here) hand a value
Gradio can't read (None, text or NaN for a number, a name not among the choices, as an API call can send) to the
handler as sent, and the handler refuses it with a sentence: Gradio's own preprocessing fails on such values with
a bare "Error" (no message) or a message that echoes the value into the browser's toast, which renders HTML.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math

import gradio as gr

log = logging.getLogger("studio")


def sentence(error: BaseException) -> str:
    """The error's message as the page shows it: first letter capitalised (a Latin one only: "β must be …" stays
    β, not the capital Β that reads as a B), and HTML-escaped, because Gradio renders an error's message as HTML
    and the message may quote what was typed (an unknown model ``<img src=x onerror=…>``)."""
    text = str(error).strip() or type(error).__name__
    if text[0].isascii():
        text = text[0].upper() + text[1:]
    return html.escape(text, quote=False)


def known_errors() -> tuple[type[BaseException], ...]:
    from alignment import ModelLoadError

    from .engine import Unavailable
    from .store import StoreError

    return (ValueError, ModelLoadError, Unavailable, StoreError)


def page_errors(fn):
    """Turn ValueError, ModelLoadError, Unavailable and StoreError into ``gr.Error`` with their message; anything
    else into a short ``gr.Error`` (the traceback goes to the server log)."""

    def translate(e: Exception) -> gr.Error:
        if isinstance(e, known_errors()):
            return gr.Error(sentence(e))
        log.error("unexpected failure in %s", getattr(fn, "__name__", fn), exc_info=e)
        return gr.Error(f"Something went wrong ({type(e).__name__}); the details are in the server log. "
                        "Try again, or change the settings.")

    if inspect.isgeneratorfunction(fn):  # a streaming handler stays a generator, for Gradio and spaces.GPU
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001 - the page gets a sentence, the log gets the traceback
                raise translate(e) from e
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - the page gets a sentence, the log gets the traceback
            raise translate(e) from e

    return wrapper


def text(value) -> str:
    """Text for a Markdown component, shown as text: HTML escaped and Markdown's own characters backslashed."""
    escaped = html.escape(str(value), quote=False)
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~" else ch for ch in escaped)


def gpu(fn):
    """``spaces.GPU`` when the ``spaces`` package is installed (Hugging Face ZeroGPU), else ``fn`` unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


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
