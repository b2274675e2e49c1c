"""How the page reports failures: a known failure is one sentence in a ``gr.Error``; anything else is logged with
its traceback and shown as one sentence too, never as a stack trace in the page."""

from __future__ import annotations

import functools
import html
import inspect
import logging

import gradio as gr

log = logging.getLogger("studio")


def sentence(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text[0].upper() + text[1:]


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
