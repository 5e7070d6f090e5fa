"""Search: nearest tiles to a query over an index of anchor embeddings, and pictures of them.

:mod:`index` embeds a dataset's satellite tiles into a Lance table and searches it (exactly, or
through a vector index); :mod:`maps` draws a query's similarity to every tile beside a
background image, and the best tiles as a grid.
"""
