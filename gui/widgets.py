"""Drawing widgets: level meters, a scrolling spectrogram, status indicators."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QLabel, QPushButton, QScrollArea, QSizePolicy,
    QSlider, QWidget,
)

FLOOR_DB = -60.0
CEIL_DB = 6.0
METER_MARKS_DB = (6.0, 0.0, -6.0, -12.0, -24.0, -48.0)
FADER_MARKS_DB = (6.0, 0.0, -6.0, -12.0, -float("inf"))  # a 0..2 linear fader: +6 dB at the top


class LevelMeter(QWidget):
    """Vertical meter: RMS as a solid bar, peak as a lighter bar, a peak-hold tick.

    ``set_levels`` takes the engine's last-block values in dBFS; the meter
    adds ballistics (peak falls at 20 dB/s, hold 1.5 s) so short blocks do
    not flicker. ``frames`` counts paints (the measured frame rate).
    """

    FALL_DB_PER_S = 20.0
    HOLD_S = 1.5

    def __init__(self, parent=None, stereo_width: int = 16, scale: bool = True):
        super().__init__(parent)
        self.peak = self.rms = FLOOR_DB - 1
        self.hold = FLOOR_DB - 1
        self._hold_at = 0.0
        self._last = time.perf_counter()
        self.frames = 0
        self.scale = scale  # dBFS labels drawn over the bar: the strip stays narrow
        self.setMinimumSize(stereo_width, 80)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Expanding)
        self.setFixedWidth(stereo_width)
        self.setToolTip("Peak (light) and RMS (solid) level in dBFS; the line holds the recent peak")

    def sizeHint(self) -> QSize:
        return QSize(self.width(), 160)

    def set_levels(self, peak_db: float, rms_db: float) -> None:
        now = time.perf_counter()
        dt = now - self._last
        self._last = now
        fallen = self.peak - self.FALL_DB_PER_S * dt
        new_peak = max(peak_db, fallen)
        if peak_db >= self.hold or now - self._hold_at > self.HOLD_S:
            self.hold, self._hold_at = peak_db, now
        new_rms = rms_db if rms_db > self.rms else max(rms_db, self.rms - self.FALL_DB_PER_S * dt)
        if abs(new_peak - self.peak) > 0.05 or abs(new_rms - self.rms) > 0.05 or new_peak > FLOOR_DB:
            self.peak, self.rms = new_peak, new_rms
            self.update()

    def reset(self) -> None:
        """Silence now (peak, RMS and hold to the floor), not by the fall-back ballistics."""
        self.peak = self.rms = self.hold = FLOOR_DB - 1
        self.update()

    def _y(self, db: float, h: float) -> float:
        f = (min(max(db, FLOOR_DB), CEIL_DB) - FLOOR_DB) / (CEIL_DB - FLOOR_DB)
        return h * (1.0 - f)

    def paintEvent(self, event) -> None:
        self.frames += 1
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(18, 20, 24))
        grad = QLinearGradient(0, h, 0, 0)
        grad.setColorAt(0.0, QColor(40, 200, 90))
        grad.setColorAt(self._frac(-12.0), QColor(120, 220, 60))
        grad.setColorAt(self._frac(-3.0), QColor(240, 200, 40))
        grad.setColorAt(self._frac(0.0), QColor(240, 60, 40))
        grad.setColorAt(1.0, QColor(255, 40, 40))
        y_peak = self._y(self.peak, h)
        y_rms = self._y(self.rms, h)
        p.setOpacity(0.45)
        p.fillRect(QRectF(1, y_peak, w - 2, h - y_peak), grad)
        p.setOpacity(1.0)
        p.fillRect(QRectF(1, y_rms, w - 2, h - y_rms), grad)
        if self.hold > FLOOR_DB:
            y = self._y(self.hold, h)
            p.setPen(QPen(QColor(255, 80, 60) if self.hold > 0 else QColor(230, 230, 230), 2))
            p.drawLine(1, int(y), w - 2, int(y))
        p.setPen(QColor(70, 74, 82))
        for mark in METER_MARKS_DB[1:]:
            y = int(self._y(mark, h))
            p.drawLine(0, y, 3, y)
        if self.scale:
            self._paint_scale(p)
        p.end()

    def _paint_scale(self, p: QPainter) -> None:
        """dBFS labels over the bar (+6 at the top, -48 near the bottom), shadowed to read on any colour."""
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.7))
        p.setFont(font)
        fm = p.fontMetrics()
        w, h = self.width(), self.height()
        last = None  # a short meter (1024x700) skips the labels that would overlap the one above
        for mark in METER_MARKS_DB:
            y = self._y(mark, h)
            top = min(max(0.0, y - fm.height() / 2), h - fm.height())
            if last is not None and top < last + fm.height() - 1:
                continue
            last = top
            text = f"{mark:+.0f}" if mark > 0 else f"{mark:.0f}"
            for dx, color in ((1, QColor(0, 0, 0, 200)), (0, QColor(225, 228, 234, 220))):
                p.setPen(color)
                p.drawText(QRectF(dx, top + dx, w - 2, fm.height()), int(Qt.AlignRight | Qt.AlignVCenter), text)

    @staticmethod
    def _frac(db: float) -> float:
        return (db - FLOOR_DB) / (CEIL_DB - FLOOR_DB)


def _colormap() -> np.ndarray:
    """256 ARGB32 entries, dark blue -> magenta -> orange -> pale yellow."""
    stops = np.array([[0, 8, 8, 16], [0.25, 60, 15, 110], [0.5, 180, 40, 120], [0.75, 250, 140, 40],
                      [1.0, 255, 250, 200]])
    x = np.linspace(0, 1, 256)
    rgb = [np.interp(x, stops[:, 0], stops[:, k]) for k in (1, 2, 3)]
    r, g, b = (np.clip(c, 0, 255).astype(np.uint32) for c in rgb)
    return (0xFF << 24) | (r << 16) | (g << 8) | b


class Spectrogram(QWidget):
    """Scrolling log-frequency spectrogram; ``push(samples)`` adds one column.

    The FFT runs on the UI thread on a snapshot the caller copied from a tap
    ring (2048 samples, about 0.1 ms of numpy work per column).
    """

    def __init__(self, parent=None, columns: int = 480, rows: int = 160, rate: int = 48000, n_fft: int = 2048):
        super().__init__(parent)
        self.columns, self.rows, self.n_fft = columns, rows, n_fft
        self.lut = _colormap()
        self.qimage = QImage(columns, rows, QImage.Format_RGB32)
        self.qimage.fill(QColor(int(self.lut[0]) & 0xFFFFFF))
        # a numpy view on the image's own pixels: columns are written in place
        self.image = np.ndarray((rows, self.qimage.bytesPerLine() // 4), np.uint32, buffer=self.qimage.bits())
        self.write = 0
        self.window = np.hanning(n_fft).astype(np.float32)
        self.set_rate(rate)
        self.setMinimumSize(240, 100)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setToolTip("Live spectrogram: time runs left to right, frequency on a log scale (30 Hz to 16 kHz)")

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        freqs = np.geomspace(30.0, min(16000.0, rate / 2 * 0.95), self.rows)[::-1]  # top row: high
        self.bins = np.clip(np.round(freqs * self.n_fft / rate).astype(int), 1, self.n_fft // 2)

    def clear(self) -> None:
        self.image[:] = self.lut[0]
        self.write = 0
        self.update()

    def push(self, samples: np.ndarray) -> None:
        spec = np.abs(np.fft.rfft(samples[-self.n_fft:] * self.window)) * (2.0 / self.window.sum())
        level = 20.0 * np.log10(np.maximum(spec[self.bins], 1e-7))
        idx = np.clip((level + 100.0) * (255.0 / 100.0), 0, 255).astype(np.intp)
        self.image[:, self.write] = self.lut[idx]
        self.write = (self.write + 1) % self.columns
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.SmoothPixmapTransform, True)
        w, h, c = self.width(), self.height(), self.columns
        old = c - self.write  # oldest columns first: [write, c) then [0, write)
        split = w * old / c
        p.drawImage(QRectF(0, 0, split, h), self.qimage, QRectF(self.write, 0, old, self.rows))
        if self.write:
            p.drawImage(QRectF(split, 0, w - split, h), self.qimage, QRectF(0, 0, self.write, self.rows))
        p.setPen(QColor(200, 200, 210, 160))
        h = self.height()
        for f in (100, 1000, 10000):
            if f < self.rate / 2:
                k = np.argmin(np.abs(np.geomspace(30.0, min(16000.0, self.rate / 2 * 0.95), self.rows)[::-1] - f))
                y = int(h * k / self.rows)
                p.drawText(4, max(12, y - 2), f"{f // 1000}k" if f >= 1000 else f"{f}")
                p.drawLine(0, y, 8, y)
        p.end()


class Indicator(QLabel):
    """A small always-visible status box; ``set(text, bad)`` turns it red when bad."""

    STYLE_OK = "QLabel { background:#1f2a22; color:#9fe0a8; border:1px solid #2f5a38; border-radius:4px; padding:3px 8px; }"
    STYLE_BAD = "QLabel { background:#5a1a1a; color:#ffd0d0; border:1px solid #c03030; border-radius:4px; padding:3px 8px; font-weight:bold; }"
    STYLE_WARN = "QLabel { background:#4a3a12; color:#ffe2a0; border:1px solid #b08a2a; border-radius:4px; padding:3px 8px; }"
    STYLE_IDLE = "QLabel { background:#23262c; color:#9aa0aa; border:1px solid #383c44; border-radius:4px; padding:3px 8px; }"

    def __init__(self, title: str, tooltip: str, parent=None):
        super().__init__(parent)
        self.title = title
        self.bad = False
        self.warn = False
        self.setToolTip(tooltip)
        self.setAlignment(Qt.AlignCenter)
        self.setSizePolicy(QSizePolicy.Minimum, QSizePolicy.Preferred)  # never narrower than its text
        self.set_idle()

    def reserve(self, widest: str) -> None:
        """Keep room for ``widest`` as drawn when red (bold), so the pill neither truncates nor
        resizes the header when its figure changes."""
        shown, style = self.text(), self.styleSheet()
        self.setText(f"{self.title}  {widest}")
        self.setStyleSheet(self.STYLE_BAD)
        self.ensurePolished()
        width = self.sizeHint().width()
        self.setText(shown)
        self.setStyleSheet(style)
        self.setMinimumWidth(max(self.minimumWidth(), width))

    def set(self, text: str, bad: bool, warn: bool = False) -> None:
        """Red when ``bad``, amber when only ``warn``, green otherwise."""
        self.bad, self.warn = bad, warn and not bad
        self.setText(f"{self.title}  {text}")
        self.setStyleSheet(self.STYLE_BAD if bad else self.STYLE_WARN if warn else self.STYLE_OK)

    def set_idle(self, text: str = "–") -> None:
        self.bad = self.warn = False
        self.setText(f"{self.title}  {text}")
        self.setStyleSheet(self.STYLE_IDLE)


class FaderScale(QWidget):
    """dB labels beside a vertical 0..2 linear-gain fader, at the handle's centre for each mark."""

    def __init__(self, fader: QSlider, parent=None):
        super().__init__(parent)
        self.fader = fader
        self.setFixedWidth(self.fontMetrics().horizontalAdvance("-40") + 4)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Expanding)
        self.setToolTip("Fader gain in dB (0 dB: the stem as separated)")

    def mark_y(self, db: float) -> float:
        """Where the handle's centre sits at ``db``, in this widget's coordinates."""
        from PySide6.QtWidgets import QStyle, QStyleOptionSlider

        f = self.fader
        opt = QStyleOptionSlider()
        f.initStyleOption(opt)
        handle = f.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderHandle, f).height()
        value = 100.0 * 10.0 ** (db / 20.0) if db > -200 else 0.0  # the fader's unit: gain x 100
        span = f.height() - handle
        frac = (value - f.minimum()) / max(1, f.maximum() - f.minimum())
        y_in_fader = handle / 2 + (1.0 - frac) * span
        return self.mapFromGlobal(f.mapToGlobal(f.rect().topLeft())).y() + y_in_fader

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.75))
        p.setFont(font)
        p.setPen(QColor(130, 136, 146))
        fm = p.fontMetrics()
        last = None
        for db in FADER_MARKS_DB:
            y = self.mark_y(db)
            top = min(max(0.0, y - fm.height() / 2), self.height() - fm.height())
            if last is not None and top < last + fm.height() - 1:
                continue  # overlapping the label above (a short fader)
            last = top
            text = "-∞" if db < -200 else f"{db:+.0f}" if db > 0 else f"{db:.0f}"
            p.drawText(QRectF(0, top, self.width(), fm.height()), int(Qt.AlignLeft | Qt.AlignVCenter), text)
        p.end()


def gain_text(gain: float) -> str:
    import math

    return "-inf dB" if gain <= 0 else f"{20 * math.log10(gain):+.1f} dB"


def time_text(seconds: float) -> str:
    """m:ss.s (a playback position)."""
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


class Waveform(QWidget):
    """A stem's min/max envelope with a playhead; a click asks to seek there.

    ``set_envelope`` takes (2, columns) min/max values in -1..1, computed off
    the UI thread; painting only scales them to the widget.
    """

    seek_requested = Signal(float)  # 0..1

    def __init__(self, color: QColor | None = None, parent=None):
        super().__init__(parent)
        self.envelope = np.zeros((2, 0), np.float32)
        self.fraction = 0.0  # playhead
        self.color = color or QColor(90, 170, 230)
        self.dimmed = False  # muted, or not heard because another stem is soloed
        self.setMinimumSize(100, 36)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("Click to play from here")

    def set_envelope(self, envelope: np.ndarray) -> None:
        self.envelope = envelope
        self._version = getattr(self, "_version", 0) + 1
        self.update()

    def set_playhead(self, fraction: float) -> None:
        if abs(fraction - self.fraction) * max(1, self.width()) >= 0.5:
            self.fraction = fraction
            self.update()

    def set_dimmed(self, dimmed: bool) -> None:
        if dimmed != self.dimmed:
            self.dimmed = dimmed
            self.update()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton and self.width() > 0:
            self.seek_requested.emit(min(max(event.position().x() / self.width(), 0.0), 1.0))

    def paintEvent(self, event) -> None:
        key = (self.width(), self.height(), self.dimmed, getattr(self, "_version", 0))
        if getattr(self, "_cache_key", None) != key:  # redrawn on resize or new data only, not per playhead move
            self._cache = self._draw_wave()
            self._cache_key = key
        p = QPainter(self)
        p.drawPixmap(0, 0, self._cache)
        x = int(self.fraction * self.width())
        p.setPen(QPen(QColor(255, 255, 255), 1))
        p.drawLine(x, 0, x, self.height())
        p.end()

    def _draw_wave(self):
        from PySide6.QtGui import QPixmap

        w, h = max(1, self.width()), max(1, self.height())
        pixmap = QPixmap(w, h)
        pixmap.fill(QColor(18, 20, 24))
        p = QPainter(pixmap)
        mid = h / 2
        cols = self.envelope.shape[1]
        if cols:
            color = QColor(self.color)
            if self.dimmed:
                color.setAlpha(70)
            p.setPen(color)
            idx = np.minimum((np.arange(w) * cols / w).astype(int), cols - 1)
            lo, hi = self.envelope[0, idx], self.envelope[1, idx]
            for x in range(w):
                p.drawLine(x, int(mid - hi[x] * mid), x, int(mid - lo[x] * mid))
        p.setPen(QColor(60, 64, 72))
        p.drawLine(0, int(mid), w, int(mid))
        p.end()
        return pixmap


def envelope(samples: np.ndarray, columns: int = 1200) -> np.ndarray:
    """(2, columns) min/max of ``samples`` ((frames, channels) or (frames,)), mono-mixed."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    n = len(mono)
    if n == 0:
        return np.zeros((2, 0), np.float32)
    columns = min(columns, n)
    edges = np.linspace(0, n, columns + 1).astype(int)
    lo = np.minimum.reduceat(mono, edges[:-1])
    hi = np.maximum.reduceat(mono, edges[:-1])
    return np.clip(np.stack([lo, hi]).astype(np.float32), -1.0, 1.0)


def keep_width_for(button: QPushButton, texts) -> None:
    """Size ``button`` for the widest of the texts it shows, so the header never moves when it changes."""
    button.ensurePolished()  # the style sheet's font
    shown = button.text()
    widest = 0
    for text in texts:
        button.setText(text)
        widest = max(widest, button.sizeHint().width())
    button.setText(shown)
    button.setMinimumWidth(widest)


def button(text: str, tooltip: str, on_click) -> QPushButton:
    """A push button with its tooltip and click handler, in one line."""
    b = QPushButton(text)
    b.setToolTip(tooltip)
    b.clicked.connect(on_click)
    return b


class WheelGuard(QObject):
    """Combo boxes, sliders and spin boxes inside a scroll area take the mouse wheel only when
    they have the keyboard focus (a click or Tab gives it); otherwise the wheel scrolls the area.

    The convention of the desktop apps users know: a wheel notch over a scrolling panel must not
    switch the listen mode or the key of a live stream. Installed on the application (so widgets
    made later, like an effect's parameter boxes, are covered); ``remove()`` takes it off.
    """

    GUARDED = (QComboBox, QAbstractSlider, QAbstractSpinBox)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.blocked = 0  # wheel events kept from a control (tests read it)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    @classmethod
    def guarded(cls, obj) -> QWidget | None:
        """The control ``obj`` belongs to (a combo's line edit, a spin box's editor), if one."""
        w = obj if isinstance(obj, QWidget) else None
        for _ in range(3):
            if w is None:
                return None
            if isinstance(w, cls.GUARDED):
                return w
            w = w.parentWidget()
        return None

    @staticmethod
    def scroll_area(w: QWidget) -> QScrollArea | None:
        parent = w.parentWidget()
        while parent is not None:
            if isinstance(parent, QScrollArea):
                return parent
            parent = parent.parentWidget()
        return None

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Polish and isinstance(obj, self.GUARDED):
            if obj.focusPolicy() == Qt.WheelFocus:  # Qt gives the focus on a wheel before filters see it
                obj.setFocusPolicy(Qt.StrongFocus)
            return False
        if event.type() != QEvent.Wheel:
            return False
        control = self.guarded(obj)
        if control is None or control.hasFocus():
            return False
        area = self.scroll_area(control)
        if area is None:  # a mixer fader on its own: the wheel moves it (as in a DAW)
            return False
        self.blocked += 1
        bar = area.verticalScrollBar()
        steps = event.angleDelta().y() / 120.0
        bar.setValue(int(bar.value() - steps * bar.singleStep() * QApplication.wheelScrollLines()))
        return True  # consumed: the control keeps its value


def wheel_needs_focus(*widgets) -> None:
    """Give these controls Qt.StrongFocus (click or Tab, not the wheel, gives them the focus)."""
    for w in widgets:
        w.setFocusPolicy(Qt.StrongFocus)
