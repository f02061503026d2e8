"""The EMR target: cluster and step builders, the client, logs, diagnosis, bootstrap, reaper."""
