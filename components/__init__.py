"""mixunlearn components: the work, free of any orchestrator."""

import os

# libgomp (torch's OpenMP) spin-waits for work by default. On a busy 2-core machine that turns every small
# operator into a scheduler wait: 5 digits epochs took 6.7 s spinning against 1.9 s with passive waiting (same
# load). Set before torch is imported; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
