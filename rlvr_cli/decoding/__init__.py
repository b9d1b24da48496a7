"""Decoding, for training and evaluation alike: the decode loop where finished rows leave the batch, the answer stop on the token side, and cascade attention that holds a shared prompt once."""
