"""SageMaker from the caller's side: AWS clients, the CreateTrainingJob request and its checks, job
states, CloudWatch logs, S3 upload and download, the local job history, and the commands (upload,
train --remote, status, logs, stop). No torch, transformers, trl or pydantic on these paths: `rlvr
status` starts fast."""
