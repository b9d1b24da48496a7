"""`rlvr eval`: generate greedily, score with the task, compare two models on the same problems."""
