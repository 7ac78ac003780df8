"""Command-line tools and the renderers they share (graph pictures, HTML report)."""
