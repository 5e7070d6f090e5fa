"""Encoders: a modality's network wrapped for the space, open_clip towers, weights files.

The layer between the plugin host and everything that trains or searches: :mod:`encoder` wraps
whatever network a plugin builds, :mod:`vision` and :mod:`anchor` build the image towers,
:mod:`convert` maps other libraries' checkpoints to open_clip's names, :mod:`weights` reads and
writes weights files and :mod:`media` decodes images.
"""
