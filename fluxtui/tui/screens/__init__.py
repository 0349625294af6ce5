"""The five screens (Textual modes) and the dialogs."""
