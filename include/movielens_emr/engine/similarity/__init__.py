"""The exact item-item similarity engine: the three-stage mrjob job of jobs/, its block plan, its results."""
