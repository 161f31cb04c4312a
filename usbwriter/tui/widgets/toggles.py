"""Check boxes and radio buttons that show their state in text, [x] or [ ], not only in
colour: readable on a monochrome terminal, through a screen reader, or in a copied log."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox, RadioButton

ON, OFF = "[x]", "[ ]"


class TextCheckbox(Checkbox):
    """A Checkbox drawn as ``[x] label`` or ``[ ] label``."""

    BUTTON_LEFT = ""
    BUTTON_RIGHT = ""
    BUTTON_INNER = OFF

    def render(self) -> Content:
        self.BUTTON_INNER = ON if self.value else OFF
        return super().render()


class TextRadioButton(RadioButton):
    """A RadioButton drawn as ``[x] label`` or ``[ ] label``."""

    BUTTON_LEFT = ""
    BUTTON_RIGHT = ""
    BUTTON_INNER = OFF

    def render(self) -> Content:
        self.BUTTON_INNER = ON if self.value else OFF
        return super().render()
