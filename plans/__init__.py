"""Emergency plans: templates, steps, timing and drills (issue 5; nothing here yet)."""
