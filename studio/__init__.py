"""The Gradio studio: Explore (baseline vs aligned), the blind Arena, the Dashboard (``ui.py`` composes the tabs);
without Gradio, the settings, resources, configurations, input checks and generation engine, the vote store and
arena logic, the vote analytics (records, ratings, dashboard) and the exports."""
