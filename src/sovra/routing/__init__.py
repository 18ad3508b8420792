"""The semantic router: signals read from a prompt (signals/), an operator's policy over them
(policy.py), and the decision the gateway acts on (router.py)."""
