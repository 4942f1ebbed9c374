"""Google Cloud: data, checkpoints and exports on Cloud Storage; training on Vertex AI.

- `gcs`: ``gs://`` paths, the client and the identity it uses, streamed reads, permission
  checks before a run starts.
- `transfer`: create-only uploads (files and whole folders) with checksums verified, and
  downloads into a local content-hash cache.
- `vertex`: the Vertex AI CustomJob spec for a recipe on a TPU or GPU.

The Google libraries come with the ``cloud`` extra (``pip install "gemma-panel[cloud]"``);
they are imported only when a ``gs://`` path or a cloud command is used.
"""
