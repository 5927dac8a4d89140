"""The dark theme: one palette for Qt widgets and pyqtgraph plots. GUI thread."""
from __future__ import annotations

BACKGROUND = "#17191d"
PANEL = "#22252b"
CARD = "#2b2f36"
BORDER = "#3a3f48"
TEXT = "#e6e6e6"
MUTED = "#9aa0aa"
ACCENT = "#f0a030"  # knob arcs, selection
INPUT_COLOR = "#4fa3ff"
OUTPUT_COLOR = "#f0a030"
LED_ON = "#ff3b30"
LED_OFF = "#4a2a28"
GOOD = "#46c46a"
WARN = "#f0c030"
BAD = "#ff4d4d"

# A colour per pedal (card header stripe); unknown pedals get MUTED.
PEDAL_COLORS = {"od3": "#e8c21b", "la2a": "#9aa6b2", "jvm": "#c0392b"}

STYLESHEET = f"""
QWidget {{ background: {BACKGROUND}; color: {TEXT}; font-size: 10pt; }}
QMainWindow::separator {{ background: {BORDER}; width: 2px; height: 2px; }}
QToolBar {{ background: {PANEL}; border: none; border-bottom: 1px solid {BORDER}; spacing: 6px; padding: 4px; }}
QToolBar QLabel {{ background: transparent; color: {MUTED}; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; border-top: 1px solid {BORDER}; }}
QStatusBar QLabel {{ background: transparent; color: {MUTED}; padding: 0 8px; }}
QPushButton, QToolButton {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 4px;
    padding: 4px 10px; color: {TEXT}; }}
QPushButton:hover, QToolButton:hover {{ border-color: {ACCENT}; }}
QPushButton:checked, QToolButton:checked {{ background: #4a3a20; border-color: {ACCENT}; }}
QPushButton:disabled, QToolButton:disabled {{ color: #666; }}
QComboBox, QSpinBox, QDoubleSpinBox, QLineEdit {{ background: {CARD}; border: 1px solid {BORDER};
    border-radius: 4px; padding: 2px 6px; }}
QComboBox QAbstractItemView {{ background: {CARD}; selection-background-color: #4a3a20; }}
QSlider::groove:horizontal {{ height: 4px; background: {BORDER}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {ACCENT}; width: 12px; margin: -5px 0; border-radius: 6px; }}
QScrollArea {{ border: none; }}
QDockWidget {{ color: {TEXT}; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; }}
QTabWidget::pane {{ border: 1px solid {BORDER}; }}
QTabBar::tab {{ background: {PANEL}; padding: 4px 10px; border: 1px solid {BORDER}; }}
QTabBar::tab:selected {{ background: {CARD}; border-bottom-color: {ACCENT}; }}
QProgressBar {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 4px; text-align: center; }}
QProgressBar::chunk {{ background: {ACCENT}; }}
QFrame#PedalCard {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 8px; }}
QFrame#PedalCard[selected="true"] {{ border: 1px solid {ACCENT}; }}
QLabel#CardTitle {{ font-weight: bold; font-size: 12pt; background: transparent; }}
QLabel#CardSub {{ color: {MUTED}; background: transparent; font-size: 8pt; }}
QLabel#SectionTitle {{ color: {MUTED}; font-size: 9pt; background: transparent; }}
"""


def apply(app) -> None:
    """Apply the stylesheet and the matching pyqtgraph defaults."""
    import pyqtgraph as pg
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    # No antialiasing: on a software rasteriser it costs ~10x per curve, and the GUI thread must
    # leave the GIL to the audio callback.
    pg.setConfigOptions(background=PANEL, foreground=MUTED, antialias=False)
