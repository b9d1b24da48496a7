"""SageMaker from the caller's side: AWS clients, the job request and its checks, job states, logs,
S3 transfers, the local job history, and the commands.

The commands are upload, train --remote, status, logs and stop. No torch, transformers, trl or
pydantic on these paths (`make lint` checks it): `rlvr status` starts fast.
"""
