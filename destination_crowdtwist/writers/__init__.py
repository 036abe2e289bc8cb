"""Writers: one per CrowdTwist object type, behind the ``Writer`` protocol of ``writers/base.py``."""
