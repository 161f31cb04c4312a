"""Readers for the boot records of disk and ISO images, used by usbwriter.boot."""
