"""Inside the SageMaker training job: the container entry (`docker run IMAGE train`) and the launcher
that starts one rank per GPU."""
