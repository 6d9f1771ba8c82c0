"""Models that are not in the zoo, exported by tests/test_own_model.py the way a user would."""
