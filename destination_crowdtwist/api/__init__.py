"""Talking to CrowdTwist: HTTP client, signing, retry decisions, rate budget, errors, redaction."""
