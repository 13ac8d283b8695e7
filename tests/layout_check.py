"""A generic layout checker for Qt windows: walks every visible widget.

``layout_problems(window)`` returns one line per fault:
- two visible sibling widgets whose rectangles overlap;
- a widget reaching outside its parent (cut off);
- a label, button, check box, combo box, group box or tab whose text does not
  fit (it would be clipped or elided): the text's width by the widget's font
  metrics against the room the widget's style leaves for it;
- a tree or table cell whose text is wider than its column.

It knows no widget of the app by name, so it covers widgets added later too.
"""

from __future__ import annotations

import re
from itertools import combinations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractButton, QAbstractScrollArea, QCheckBox, QComboBox, QGroupBox, QLabel, QPushButton, QRadioButton,
    QStyle, QStyleOptionButton, QStyleOptionComboBox, QTabBar, QToolButton, QTreeWidget, QWidget,
)

TOLERANCE = 1  # px: rounding of fractional font metrics


def _visible_children(parent: QWidget) -> list[QWidget]:
    return [c for c in parent.children() if isinstance(c, QWidget) and c.isVisible() and not c.isWindow()
            and c.width() > 0 and c.height() > 0]


def _name(w: QWidget) -> str:
    text = ""
    for attr in ("text", "title", "currentText"):
        getter = getattr(w, attr, None)
        if callable(getter):
            try:
                value = getter()
            except TypeError:
                continue
            if isinstance(value, str) and value:
                text = value
                break
    text = re.sub(r"<[^>]+>", "", text)[:40]
    return f"{type(w).__name__}({w.objectName() or ''}{'; ' if w.objectName() and text else ''}{text!r})"


def _plain(text: str) -> str:
    return re.sub(r"&(?!&)", "", text)  # mnemonic markers take no room


def _text_fault(w: QWidget) -> str | None:
    fm = QFontMetrics(w.font())
    if isinstance(w, QLabel):
        text = w.text()
        if not text or w.pixmap() is not None and not w.pixmap().isNull():
            return None
        room = w.contentsRect().width() - 2 * w.margin() - (w.indent() if w.indent() > 0 else 0)
        if w.wordWrap() or re.search(r"<[a-zA-Z]", text):
            # wrapped or rich text: the height it needs at this width must fit
            need_h = w.heightForWidth(w.width()) if w.wordWrap() else w.sizeHint().height()
            if not w.wordWrap() and w.sizeHint().width() > w.width() + TOLERANCE:
                return f"{_name(w)} needs {w.sizeHint().width()} px, has {w.width()}"
            if need_h > w.height() + TOLERANCE:
                return f"{_name(w)} needs {need_h} px of height, has {w.height()}"
            return None
        width = max(fm.horizontalAdvance(line) for line in text.split("\n"))
        if width > room + TOLERANCE:
            return f"{_name(w)} text is {width} px wide, room {room}"
        return None
    if isinstance(w, QToolButton):
        # its own style option; it shows its text unless it has an icon and shows icons only
        has_icon = not w.icon().isNull()
        if not w.text() or (has_icon and w.toolButtonStyle() == Qt.ToolButtonIconOnly):
            return None
        width = fm.horizontalAdvance(_plain(w.text()))
        if has_icon and w.toolButtonStyle() != Qt.ToolButtonTextOnly:
            width += w.iconSize().width() + 4
        if width > w.width() - 6 + TOLERANCE:
            return f"{_name(w)} text is {width} px wide, room {w.width() - 6}"
        return None
    if isinstance(w, QAbstractButton) and w.text():
        opt = QStyleOptionButton()
        w.initStyleOption(opt) if hasattr(w, "initStyleOption") else opt.initFrom(w)
        if isinstance(w, QPushButton):
            element = QStyle.SE_PushButtonContents
        elif isinstance(w, (QCheckBox, QRadioButton)):
            element = QStyle.SE_CheckBoxContents if isinstance(w, QCheckBox) else QStyle.SE_RadioButtonContents
        else:
            return None
        room = w.style().subElementRect(element, opt, w).width()
        width = fm.horizontalAdvance(_plain(w.text()))
        if not w.icon().isNull():
            width += w.iconSize().width() + 4
        if width > room + TOLERANCE:
            return f"{_name(w)} text is {width} px wide, room {room}"
        return None
    if isinstance(w, QComboBox) and w.currentText() and not w.isEditable():
        opt = QStyleOptionComboBox()
        w.initStyleOption(opt)
        room = w.style().subControlRect(QStyle.CC_ComboBox, opt, QStyle.SC_ComboBoxEditField, w).width()
        width = fm.horizontalAdvance(w.currentText())
        if width > room + TOLERANCE:
            return f"{_name(w)} current text is {width} px wide, room {room}"
        return None
    if isinstance(w, QGroupBox) and w.title():
        font = w.font()
        font.setBold(True)  # the app's style draws titles bold
        width = QFontMetrics(font).horizontalAdvance(_plain(w.title())) + 20  # indent and padding
        if width > w.width() + TOLERANCE:
            return f"{_name(w)} title is {width} px wide, box {w.width()}"
        return None
    if isinstance(w, QTabBar):
        for i in range(w.count()):
            need = fm.horizontalAdvance(_plain(w.tabText(i)))
            if need > w.tabRect(i).width():
                return f"{_name(w)} tab {w.tabText(i)!r} is {need} px wide, tab {w.tabRect(i).width()}"
    return None


def _tree_faults(tree: QTreeWidget) -> list[str]:
    out = []
    fm = QFontMetrics(tree.font())
    header = tree.header()
    margins = 2 * (tree.style().pixelMetric(QStyle.PM_FocusFrameHMargin, None, tree) + 1)  # Qt's cell text margins

    def walk(item, depth):
        for col in range(tree.columnCount()):
            if header.isSectionHidden(col) or not item.text(col):
                continue
            indent = (depth + 1) * tree.indentation() if col == 0 else 0
            need = fm.horizontalAdvance(item.text(col)) + indent + margins
            if need > tree.columnWidth(col) + TOLERANCE:
                out.append(f"{_name(tree)} cell {item.text(col)!r} (column {col}) needs {need} px, "
                           f"column is {tree.columnWidth(col)}")
        if item.isExpanded():
            for k in range(item.childCount()):
                walk(item.child(k), depth + 1)

    for i in range(tree.topLevelItemCount()):
        walk(tree.topLevelItem(i), 0)
    return out


def layout_problems(window: QWidget) -> list[str]:
    """Every overlap, cut-off widget and clipped text among the visible widgets of ``window``."""
    problems: list[str] = []
    for parent in [window, *window.findChildren(QWidget)]:
        if not parent.isVisible():
            continue
        kids = _visible_children(parent)
        scrolled = isinstance(parent.parentWidget(), QAbstractScrollArea)  # a viewport's content may extend
        for a, b in combinations(kids, 2):
            if a.geometry().intersects(b.geometry()):
                problems.append(f"{_name(a)} overlaps {_name(b)} in {_name(parent)}: "
                                f"{a.geometry().getRect()} / {b.geometry().getRect()}")
        if not scrolled:
            room = QRect(0, 0, parent.width(), parent.height())
            for c in kids:
                if not room.contains(c.geometry()):
                    problems.append(f"{_name(c)} reaches outside {_name(parent)}: {c.geometry().getRect()} "
                                    f"in {parent.width()}x{parent.height()}")
        if isinstance(parent, QAbstractScrollArea):
            problems += _scroll_faults(parent)
        fault = _text_fault(parent) if parent is not window else None
        if fault and _shown(parent):
            problems.append(fault)
        if isinstance(parent, QTreeWidget):
            problems += _tree_faults(parent)
    return problems


def _scroll_faults(area: QAbstractScrollArea) -> list[str]:
    """Content wider (taller) than a scroll area's viewport with no scroll bar to reach the rest is cut."""
    widget = getattr(area, "widget", lambda: None)()
    if widget is None or not widget.isVisible():
        return []
    out = []
    view = area.viewport()
    if widget.width() > view.width() + TOLERANCE and not area.horizontalScrollBar().isVisible():
        out.append(f"{_name(area)} content is {widget.width()} px wide, its view {view.width()}, no scroll bar")
    if widget.height() > view.height() + TOLERANCE and not area.verticalScrollBar().isVisible():
        out.append(f"{_name(area)} content is {widget.height()} px high, its view {view.height()}, no scroll bar")
    return out


def _shown(w: QWidget) -> bool:
    """Not scrolled out of view inside a scroll area (its text is then not on screen at all)."""
    return not w.visibleRegion().isEmpty()
