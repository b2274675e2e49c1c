"""How the page reports failures: a known failure is one sentence in a ``gr.Error``; anything else is logged with
its traceback and shown as one sentence too, never as a stack trace in the page.

    @page_errors
    def handler(...): ...          # ValueError("β must be …") -> gr.Error("β must be …"), HTML-escaped

Bad values the page's input components let through (``studio.components``) reach the handlers, which refuse them
with such a sentence.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging

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

    from .resources import Unavailable
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
