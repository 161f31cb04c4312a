"""The ISO toolkit's read side: what an ISO holds (``contents``) and copying it out
(``extract``), raw or compressed, without mounting and without root."""

from __future__ import annotations

from usbwriter.iso.contents import Contents, Entry, IsoImage, read_contents

__all__ = ["Contents", "Entry", "IsoImage", "read_contents"]
