"""The Gradio Space: app (UI), engine (reading uploads, running the models), deploy (the bundle)."""
