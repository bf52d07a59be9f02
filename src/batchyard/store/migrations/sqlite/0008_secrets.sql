-- Secrets every process of one deployment must share, made once by whichever process asks
-- first: the dashboard's CSRF signing key (a form rendered by one server process must be
-- accepted by another behind the same load balancer, and after a restart).

CREATE TABLE batchyard_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
