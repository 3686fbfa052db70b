"""Evaluation and the precision–coverage frontier, from per-problem tables.

* :mod:`~lit_alpha.analysis.evaluate`: many samples per problem → one table row per problem (``evaluate``);
* :mod:`~lit_alpha.analysis.sweep`: configs × seeds into one MLflow experiment, each run evaluated (``sweep``);
* :mod:`~lit_alpha.analysis.stats`: pure statistics (pass@k matrices, bootstrap, hull, transitions);
* :mod:`~lit_alpha.analysis.tables`: the :class:`~lit_alpha.analysis.tables.Analysis` of one split and its tables as text;
* :mod:`~lit_alpha.analysis.figures`: the pass@k and frontier figures (matplotlib only);
* :mod:`~lit_alpha.analysis.frontier`: reading tables from MLflow, writing the report (``frontier``).
"""
