"""Keras 2's `wrappers` module: scikit-learn estimators around a model-building function."""
