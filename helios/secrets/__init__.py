"""Cluster secrets (docs/security.md, "Secrets").

- `keyring`: the conductors' AES-GCM keys (a 0600 file, never in the store) and the
  sealing of one value under the secret's name;
- `refs`: a job file's `{secret: name}` reference, as the spec keeps it;
- `store`: encrypted secret records in the cluster's store (`/secrets/<name>`), written
  by the leader in its term;
- `resolve`: what the leader adds to a pushed assignment (values, for the tasks that
  use them) and what a node turns back into a task's environment.

Nothing here is imported by `helios.spec` except `refs`, which has no dependencies.
"""
