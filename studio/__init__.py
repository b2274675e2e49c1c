"""The Gradio studio: Explore (baseline vs aligned), the blind Arena, the Dashboard (``ui.py`` composes the tabs),
the generation engine without Gradio (``engine.py``), and the vote store, arena logic and exports."""
