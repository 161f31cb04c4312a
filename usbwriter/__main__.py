from usbwriter.cli import run

run()
