"""The app's screens: main, confirm, progress, result, errors, help and file browser."""
