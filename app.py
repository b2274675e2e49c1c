"""Gradio entry point (Hugging Face Spaces app_file): builds the studio, nothing else."""

from studio.ui import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch()
