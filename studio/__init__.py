"""The Gradio studio: UI, vote store, sessions and exports (the full studio is issue 6; this holds the minimal
generation page)."""
