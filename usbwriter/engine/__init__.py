"""The engine: one write loop and one read-back under every job.

- ``target``: the drive held on one descriptor (``Target``), what a write reports
  (``WriteResult``), the wipe of a failed stick's head;
- ``selectors``: which parts of the image a drive gets (everything, a bmap's ranges,
  the blocks that differ) and what the write covered (``Coverage``);
- ``write``: ``write_drive``, the one loop from image to drive;
- ``readback``: ``read_back``, the drive read through its held descriptor and proven
  span by span, by compare or by hash;
- ``drives``: several drives written at once, each at its own pace.

Synchronous and thread-friendly: progress callbacks and a ``threading.Event`` to cancel.
"""
