"""knobnet application: command line, audio engine and the Qt pedalboard."""
