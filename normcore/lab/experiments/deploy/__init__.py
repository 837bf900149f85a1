"""The Deploy & port page's experiments: folding BatchNorm, porting conventions, precision.

Fold tab: ``fold_options`` (its controls, :class:`FoldOptions`), ``fold`` (the digits CNN
folded with ``normcore.fold_batchnorm``: parity, counts, speed-up, download) and ``mistakes``
(the classic folding mistakes, made live and measured).
"""
