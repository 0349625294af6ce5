"""The Textual app. Imports fluxtui.core and textual; never torch or fluxtui.trainer.

`make_app(workspace)` in app.py is what the CLI runs and what every test builds.
"""
