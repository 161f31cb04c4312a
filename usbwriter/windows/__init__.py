"""A Windows installer stick made by copying files: the FAT32 partition written with
mtools through the held descriptor (``fat.py``), a WIM over FAT32's file size limit split
with wimlib (``wim.py``), GRUB for BIOS chaining bootmgr (``grub.py``), and the
autounattend.xml of the Windows 11 bypass options (``unattend.py``)."""
