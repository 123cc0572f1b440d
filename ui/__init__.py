"""SAGE Studio's web UI: a Gradio app that talks to the studio gateway over HTTP only."""
