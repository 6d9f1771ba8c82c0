"""Training zoo models on real offline data (``digits``: scikit-learn's handwritten digits), so FP16, INT8
and BF16 accuracy can be measured on trained networks. Used by ``scripts/train_digits.py`` and the accuracy
tests; no export stage imports it."""
