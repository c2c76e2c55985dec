"""Cutout backends: the PicWish API client and the offline engine, behind one interface (``base.py``)."""
