"""Evaluation: how well a space retrieves, read against chance, and the pages that show it.

:mod:`retrieval` computes ranks and Recall@k, :mod:`embed` embeds a dataset's columns,
:mod:`zeroshot` classifies land cover from text prompts, :mod:`evaluate` is ``geobind eval``
(both tables, as text, JSON and Markdown), :mod:`tables` formats them, and :mod:`report` writes
the static HTML page of a space.
"""
