"""Encoders: a modality's network wrapped for the space, open_clip towers, weights files.

The layer between the plugin host and everything that trains or searches: :mod:`encoder` wraps
whatever network a plugin builds; :mod:`openclip` is the one module that calls open_clip (its
towers, CLIP checkpoints, transforms and loss), public for plugins whose encoder is an
open_clip tower; :mod:`vision` and :mod:`anchor` build the image towers; :mod:`convert` maps
other libraries' checkpoints to open_clip's names; :mod:`weights` reads and writes weights
files and :mod:`media` decodes images.
"""
