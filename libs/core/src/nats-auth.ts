/**
 * How a service proves itself to NATS (one way at most) and the TLS files it uses, as the
 * environment gives them (config reads them, the bus connects with them; paths are read at connect time).
 */
export interface NatsAuth {
  /** NATS_CREDS: a user credentials file (JWT and nkey seed). */
  credsFile?: string;
  /** NATS_USER / NATS_PASSWORD. */
  user?: string;
  password?: string;
  /** NATS_NKEY_SEED_FILE: a file holding the user's nkey seed (SU...). */
  nkeySeedFile?: string;
  /** NATS_TLS_CA: CA certificate(s) the server's certificate must chain to; turns TLS on. */
  tlsCa?: string;
  /** NATS_TLS_CERT / NATS_TLS_KEY: a client certificate, when the server asks for one. */
  tlsCert?: string;
  tlsKey?: string;
}
