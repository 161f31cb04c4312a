"""usbwriter: write bootable images to USB sticks and prove the result."""

__version__ = "0.1.0"
