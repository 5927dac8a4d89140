"""The pedalboard's Qt widgets. Everything in this package runs on the GUI thread."""
