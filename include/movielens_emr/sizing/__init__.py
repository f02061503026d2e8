"""How many nodes: the time model, the advisor, task times and prices."""
