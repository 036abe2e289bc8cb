"""Rejected rows: where they are kept (the local file, the user's bucket) and how they come back.

One module per job: ``schema`` (the lines, written and read there only), ``sink`` (the contract with
the sync report), ``local_file``, ``layout`` and ``encoding`` (where and how rows go in the bucket),
``s3_failures`` (S3's answers in words), ``s3_client`` (boto3), ``s3_calls`` (the one S3 retry loop),
``s3_sink``, ``probe`` (``check``) and ``replay`` (``replay-rejects``). boto3 is imported only by
``s3_client``, when a client is made.
"""
