"""Emergency plans: templates with L1-L4 response packs, their validation and storage, and the
engine that runs their steps on time (see docs/plans.md)."""
