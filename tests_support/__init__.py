"""Helpers shared by unit_tests/ and integration_tests/ (on sys.path through pytest's ``pythonpath``)."""
