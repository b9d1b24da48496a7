"""Inside the SageMaker training job: the entry (`docker run IMAGE train`) and the launcher of one
rank per GPU."""
