"""The Gradio Space: app (entry point), ui (the page), engine (reading uploads, running the models) and
deploy (the bundle)."""
