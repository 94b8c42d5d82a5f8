"""Start the infrastructure a local run or a test session needs: a tansu broker, a private Postgres."""
