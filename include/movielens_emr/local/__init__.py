"""The local target: the job run by mrjob's local runner on this machine."""
