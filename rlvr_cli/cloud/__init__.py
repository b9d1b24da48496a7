"""The cloud control plane: commands that talk to a cloud service, never to an ML library."""
